"""Coverage-guided fuzzing of the config loader with atheris (KV2-AC-291).

    python tools/fuzz/fuzz_config.py -max_total_time=600 [corpus_dir]

The first input byte picks the file suffix (.yaml, .yml, .json, or .hcl for Vault Agent
configs); the rest is the file's bytes. config.load() may raise only the documented tree
(ConfigError and its subclasses in practice): a KeyError, TypeError, RecursionError or
yaml error escaping is a finding. The environment passed to load() is fixed, so runs are
reproducible.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import _common  # noqa: F401  (puts the source tree on sys.path)
import atheris

with atheris.instrument_imports():
    # load() imports its stages lazily: import them here so that they are instrumented.
    from kv2render import refs  # noqa: F401
    from kv2render.config import agent, build, hcl, load, sources, values  # noqa: F401
    from kv2render.errors import Kv2RenderError

logging.disable(logging.CRITICAL)  # load() warns about modes and defaults: noise at 1,000 exec/s

_DIR = tempfile.mkdtemp(prefix="kv2render-fuzz-config-")
_ENV = {"VAULT_TOKEN": "fuzz-token-not-secret", "VAULT_ADDR": "http://127.0.0.1:8200"}
_SUFFIXES = (".yaml", ".json", ".yml", ".hcl")

# Findings already filed as strict-xfail regression tests (tests/faults/test_fuzz.py), skipped
# here so that a run keeps searching for new ones. Remove an entry when its bug is fixed.
KNOWN: tuple[tuple[type[BaseException], str], ...] = (
    # YAML complex keys ('? [1]' / '? {a: 1}') reach a set() in config_sources._construct_mapping.
    (TypeError, "unhashable type"),
)


def _known(exc: BaseException) -> bool:
    return any(isinstance(exc, kind) and text in str(exc) for kind, text in KNOWN)


def one_input(data: bytes) -> None:
    if not data:
        return
    suffix = _SUFFIXES[data[0] % len(_SUFFIXES)]
    path = os.path.join(_DIR, "kv2render" + suffix)
    with open(path, "wb") as handle:
        handle.write(data[1:])
    try:
        load(path, env=_ENV)
    except Kv2RenderError:
        pass
    except Exception as exc:
        if not _known(exc):
            raise


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
