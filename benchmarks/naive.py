"""The naive baseline: what a user would write instead of kv2render (issue 8).

A sequential loop over the templates of a kv2render config: each ``kv2("...#key")``
call in a template does one hvac read (no de-duplication, no concurrency), the
template renders with plain jinja2, and the result goes to its destination with a
plain write (no temp file, no fsync, no mode change). One ``hvac.Client``, so one
requests session with keep-alive: the baseline is naive, not sabotaged.

    VAULT_ADDR=... VAULT_TOKEN=... python benchmarks/naive.py CONFIG.yaml

It understands only what the benchmarks generate: ``contents`` templates whose
references are ``vault+kv2:///<mount>/data/<path>[?version=N]#<key>``.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import parse_qs, urlsplit

import hvac
import jinja2
import yaml


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: naive.py CONFIG.yaml", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])

    def kv2(ref: str) -> str:
        url = urlsplit(ref)
        mount, _, path = url.path.lstrip("/").partition("/data/")
        pinned = parse_qs(url.query).get("version")
        version = int(pinned[0]) if pinned else None
        resp = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, version=version, raise_on_deleted_version=True
        )
        return str(resp["data"]["data"][url.fragment])

    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.globals["kv2"] = kv2
    for entry in config["template"]:
        text = env.from_string(entry["contents"]).render()
        with open(entry["destination"], "w", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
