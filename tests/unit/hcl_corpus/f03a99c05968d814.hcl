vault {
  address = "https://vault.example:8200"
}

listener "tcp" {
  address = "S3NT1NEL-ag3nt-77aa"
}
cache {}
api_proxy {
  use_auto_auth_token = true
}
telemetry {
  prometheus_retention_time = "30s"
}
log_level = "debug"
template_config {
  max_connections_per_host = 4
}
template {
  contents    = "x"
  destination = "out"
  wait {
    min = "2s"
  }
}
