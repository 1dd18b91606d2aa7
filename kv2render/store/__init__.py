"""kv2render.store."""
