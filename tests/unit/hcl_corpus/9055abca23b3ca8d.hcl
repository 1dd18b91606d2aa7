vault {
  address = "https://vault.example:8200"
}

template {
  contents    = "a"
  destination = "a"
}
template {
  contents             = "b"
  destination          = "b"
  error_on_missing_key = true
}
