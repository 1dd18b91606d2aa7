vault {
  address = "https://vault.example:8200"
}

template {
  destination = "a"
  contents    = <<EOT
line "one" \n
  {{ .x }}

EOT
}
template {
  destination = "b"
  contents    = <<-EOT
    indented
      more
    EOT
}
