# Vault Agent config in the style of Vault's documentation (auto-auth/methods/kubernetes
# and the agent injector's init container): Kubernetes auto-auth, render once, exit.
# In the pod:  kv2render --config /etc/vault/kubernetes.hcl

exit_after_auth = true
pid_file        = "/tmp/kv2render.pid"

vault {
  address = "https://vault.vault.svc:8200"
  ca_cert = "/vault/tls/ca.crt"
}

auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config = {
      role = "my-app"
    }
  }
}

template {
  destination = "/vault/secrets/config.json"
  source      = "templates/config.json.ctmpl"
  perms       = 0640
}

template {
  destination = "/vault/secrets/db-creds"
  contents    = <<EOT
{{- with secret "secret/data/app/db" -}}
postgresql://{{ .Data.data.username }}:{{ .Data.data.password }}@db:5432/app
{{- end }}
EOT
}
