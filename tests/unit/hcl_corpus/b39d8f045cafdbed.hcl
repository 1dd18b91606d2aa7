vault {
  address = "https://vault.example:8200"
}
auto_auth {
 method "approle" {
 config = { role_id_file_path = "/r" }
 }
 sink "file" {
 config = { path = "/t" }
 }
}
