# kv2render-signals: the least a kv2render serving the Signals connector needs.
# One KV2 secret, read only. No list, no metadata, no other path: a stolen token
# (or AppRole secret_id) reads this one password and nothing else.
#
#   vault policy write kv2render-signals kv2render-policy.hcl
#   vault write auth/approle/role/kv2render-signals token_policies=kv2render-signals \
#       token_ttl=1h token_max_ttl=24h secret_id_num_uses=0
path "secret/data/signals/pg-monitor" {
  capabilities = ["read"]
}
