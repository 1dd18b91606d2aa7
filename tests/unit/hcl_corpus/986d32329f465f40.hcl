
vault {
  address = "https://vault.example:8200"
}
env_template "DB" {
  contents = "x"
}
