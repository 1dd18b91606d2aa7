vault {
  address = "https://vault.example:8200"
}

template {
  contents    = "a"
  destination = "a"
}
template {
  contents    = "b"
  destination = "b"
  perms       = "0640"
}
template {
  contents    = "c"
  destination = "c"
  perms       = "0"
}
