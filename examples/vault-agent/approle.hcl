# Vault Agent config in the style of Vault's documentation (agent/index and
# auto-auth/methods/approle pages): AppRole auto-auth and file templates.
# Run it unchanged:   kv2render --config approle.hcl
# Check it offline:   kv2render check --config approle.hcl
#
# Differences kv2render logs at start (docs/migrating-from-vault-agent.md):
# - no `sink`: kv2render never writes its token to disk, so the docs' `sink "file"` is gone;
# - templates without `perms` are written 0600 (Vault Agent: 0644).

pid_file = "./agent.pid"

vault {
  address = "https://vault.example.com:8200"
  retry {
    num_retries = 5
  }
}

auto_auth {
  method {
    type = "approle"
    config = {
      role_id_file_path                   = "/etc/vault/roleid"
      secret_id_file_path                 = "/etc/vault/secretid"
      remove_secret_id_file_after_reading = false
    }
  }
}

template_config {
  static_secret_render_interval = "10m"
  exit_on_retry_failure         = true
}

template {
  source      = "templates/db.ctmpl"
  destination = "/run/app/db.env"
  perms       = "0640"
  error_on_missing_key = true
  exec {
    command = ["systemctl", "reload", "app"]
    timeout = "30s"
  }
}

template {
  contents    = "{{ with secret \"secret/data/app/db\" }}{{ .Data.data.password }}{{ end }}"
  destination = "/run/app/db-password"
}
