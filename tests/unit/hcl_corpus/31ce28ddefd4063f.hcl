vault {
  address = "https://vault.example:8200"
}
template {
 contents = "a"
 destination = "a"
 perms = 0640
}
