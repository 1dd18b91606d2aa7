exit_after_auth = true
vault {
  address = "http://127.0.0.1:35747"
}
auto_auth {
  method "approle" {
    config = {
      role_id_file_path   = "role-id"
      secret_id_file_path = "secret-id"
    }
  }
}
listener "tcp" {
  address = "127.0.0.1:8100"
  tls_disable = true
}
cache {}
template {
  destination = "out/02-pgpass"
  contents    = <<EOT
{{- with secret "secret/data/app/db" -}}
{{ .Data.data.host }}:{{ .Data.data.port }}:{{ .Data.data.database }}:{{ .Data.data.username }}:{{ .Data.data.password }}
{{ end -}}
EOT
}
template {
  destination = "out/03-dotenv-range"
  contents    = <<EOT
{{- with secret "kv/data/prod/aws" -}}
{{ range $k, $v := .Data.data -}}
{{ $k }}={{ $v }}
{{ end }}
{{- end }}
EOT
}
template {
  destination = "out/17-missing-key"
  contents    = "{{ with secret \"secret/data/app/db\" }}token={{ .Data.data.api_token }}\n{{ end }}"
}
