vault {
  address = "https://vault.example:8200"
}

auto_auth {
  method "approle" {
    config = { role_id_file_path = "/r" }
  }
  sink "file" {
    config = { path = "/tmp/S3NT1NEL-ag3nt-77aa" }
  }
}
env_template "DB_PASSWORD" {
  contents = "S3NT1NEL-ag3nt-77aa"
}
exec {
  command = ["app"]
}
