"""kv2render.render."""
