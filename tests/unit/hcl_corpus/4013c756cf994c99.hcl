vault {
  address = "http://127.0.0.1:45415"
}
auto_auth {
  method {
    type = "approle"
    config = {
      role_id_file_path = "/nonexistent"
      secret_id = "SENTINEL-INLINE-72042ddb27a9ffbf"
    }
  }
}
template {
  contents = "x"
  destination = "/tmp/pytest-of-root/pytest-253/test_cli_leaks_no_sentinel_con22/out/pw"
}
