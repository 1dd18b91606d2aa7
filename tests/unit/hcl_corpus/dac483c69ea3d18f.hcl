vault {
  address = "https://vault.example:8200"
}

exit_after_auth = true
pid_file = "run/agent.pid"
auto_auth {
  method "kubernetes" {
    mount_path = "auth/k8s"
    config = {
      role = "app"
    }
  }
}
template_config {
  static_secret_render_interval = "2m"
  exit_on_retry_failure         = true
}
template {
  source           = "t.tmpl"
  destination      = "/run/app/out"
  backup           = true
  create_dest_dirs = false
  left_delimiter   = "[["
  right_delimiter  = "]]"
}
