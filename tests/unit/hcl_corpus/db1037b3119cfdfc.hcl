vault {
  address = "https://vault.example:8200"
}

template {
  contents    = "a"
  destination = "a"
  exec {
    command = ["systemctl", "reload", "app"]
    timeout = "45s"
  }
}
template {
  contents    = "b"
  destination = "b"
  command     = "pkill -HUP app"
}
