vault {
  address = "http://127.0.0.1:41967"
}
template {
  contents = SENTINEL-YAMLLINE-7fe3fb76e7a2a770 !
}
