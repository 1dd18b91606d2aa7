vault {
  address = "http://127.0.0.1:34063"
}
auto_auth {
  method {
    type = "approle"
    config = {
      role_id_file_path = "/nonexistent"
      secret_id = "SENTINEL-INLINE-64ec7fa0900d2793"
    }
  }
}
template {
  contents = "x"
  destination = "/tmp/pytest-of-root/pytest-253/test_cli_leaks_no_sentinel_con21/out/pw"
}
