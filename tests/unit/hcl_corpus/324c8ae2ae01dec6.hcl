vault {
  address = "https://vault.example:8200"
}
auto_auth {
 method "approle" {
 config = { secret_id = "S3NT1NEL-ag3nt-77aa" }
 }
}
