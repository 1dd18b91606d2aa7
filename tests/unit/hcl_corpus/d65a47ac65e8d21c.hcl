
pid_file = "./agent.pid"
listener "tcp" {
  address = "127.0.0.1:8100"
}
vault {
  address = "https://vault.example:8200"
  retry {
    num_retries = 5
  }
}
auto_auth {
  method "approle" {
    mount_path = "auth/approle-x/"
    config = {
      role_id_file_path = "/etc/vault/role-id"
      remove_secret_id_file_after_reading = false
    }
  }
}
template {
  source      = "db.ctmpl"
  destination = "/run/app/db"
  perms       = "0600"
  command     = ["systemctl", "reload", "app"]
}
template {
  contents    = "{{ with secret \"secret/data/app\" }}{{ .Data.data.k }}{{ end }}"
  destination = "/run/app/k"
}
