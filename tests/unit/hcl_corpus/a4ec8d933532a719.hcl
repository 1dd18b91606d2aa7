vault {
  address = "https://vault.example:8200"
}
template {
 contents = "a"
 destination = "a"
 command = "x"
 exec {
 command = ["y"]
 }
}
