vault {
  address = "https://vault.example:8200"
}
template {
 contents = "a"
 destination = "a"
 exec {
 timeout = "1s"
 }
}
