"""kv2render.output."""
