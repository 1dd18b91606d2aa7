vault {
  address = "https://vault.example:8200"
}
template {
 contents = "a"
 destination = "a"
 exec {
 command = ["y"]
 shell = true
 }
}
