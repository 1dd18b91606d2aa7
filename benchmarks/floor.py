"""The floor of kv2render's stack: the least a Python tool on hvac and PyYAML can do for a
one-shot render (issue 18).

It reads the YAML config ``benchmarks/vs_agent.py`` writes (token_file auth, one template
per secret, each reading ``user`` and ``password``), reads every secret through hvac (eight
threads when there is more than one, as kv2render's pool), and writes each file as kv2render
does: a 0600 temp file in the same directory, fsync, rename. Nothing else: no validation, no
logging, no template engine, no lock, no directory checks, no error handling.

Any tool built on the same interpreter and packages starts at least this late, so
``vs_agent.py`` reports it next to the agent: a ratio to the agent below this program's is
out of reach without leaving the stack, and kv2render's distance above it
(``vs_agent_once_over_floor``) is the part kv2render owns. Not a tool: it trusts its input.

    python benchmarks/floor.py CONFIG.yaml
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import hvac
import yaml


def main(config_path: str) -> None:
    with open(config_path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    token_path = config["auto_auth"]["method"]["config"]["token_file_path"]
    with open(token_path, encoding="utf-8") as fh:
        token = fh.read().strip()
    client = hvac.Client(url=config["vault"]["address"], token=token)

    def render(template: dict[str, Any]) -> None:
        # contents: {{ with secret "secret/data/<path>" }}... (benchmarks/vs_agent.py CTMPL)
        path = template["contents"].split('"')[1].split("/data/", 1)[1]
        answer = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )
        data = answer["data"]["data"]
        body = f"user={data['user']}\npassword={data['password']}\n".encode()
        dest = template["destination"]
        tmp = f"{dest}.floor-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dest)

    templates = config["template"]
    if len(templates) == 1:
        render(templates[0])
        return
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(render, templates))


if __name__ == "__main__":
    main(sys.argv[1])
