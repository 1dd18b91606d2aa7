"""kv2render.daemon."""
