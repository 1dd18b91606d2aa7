# Vault Agent config in the style of Vault's documentation (agent/template page):
# templates given inline with `contents`, a caching listener kept from an existing setup.
# kv2render warns that listener and cache are ignored: they do not change what is rendered.

vault {
  address = "https://vault.example.com:8200"
}

auto_auth {
  method "approle" {
    config = {
      role_id_file_path   = "/etc/vault/roleid"
      secret_id_file_path = "/etc/vault/secretid"
    }
  }
}

cache {}

listener "tcp" {
  address     = "127.0.0.1:8100"
  tls_disable = true
}

template {
  contents    = "{{ with secret \"secret/data/foo\" }}{{ .Data.data.password }}{{ end }}"
  destination = "/tmp/agent/render-content.txt"
}

template {
  contents             = <<EOT
{{ with secret "secret/data/app/config" -}}
{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }}
{{ end }}{{ end -}}
EOT
  destination          = "/tmp/agent/app.env"
  perms                = "0600"
  error_on_missing_key = true
  left_delimiter       = "{{"
  right_delimiter      = "}}"
  wait {
    min = "2s"
    max = "10s"
  }
}
