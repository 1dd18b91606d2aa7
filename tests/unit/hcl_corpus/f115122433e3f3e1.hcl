auto_auth {
  method {
    config = {
      token = "SENTINEL-INLINE-f44bf9c3f56631ac"
    }
  }
}
