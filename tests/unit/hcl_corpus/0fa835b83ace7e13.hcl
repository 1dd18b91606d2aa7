vault {
  address = "http://127.0.0.1:41939"
}
template {
  contents = SENTINEL-YAMLLINE-6302cc12ba6b0114 !
}
