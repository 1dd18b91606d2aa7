vault {
  address = "http://127.0.0.1:42009"
}
exit_after_auth = true
template {
  destination          = "out/strict"
  contents             = "{{ with secret \"secret/data/app/db\" }}token={{ .Data.data.api_token }}\n{{ end }}"
  error_on_missing_key = true
}
