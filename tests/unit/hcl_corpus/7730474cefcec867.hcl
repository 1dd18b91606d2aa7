vault {
  address = "https://vault.example:8200"
}

auto_auth {
  method "token_file" {
    config = {
      token_file_path = "/tmp/pytest-of-root/pytest-253/test_labelled_method_config_as1/token"
    }
  }
}
template {
  contents    = "x"
  destination = "/run/app/out"
}
