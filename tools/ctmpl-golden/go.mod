module kv2render.local/ctmpl-golden

go 1.19
