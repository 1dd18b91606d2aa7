"""Coverage-guided fuzzing of the KV2 reference parser with atheris (KV2-AC-291).

    python tools/fuzz/fuzz_refs.py -max_total_time=600 [corpus_dir]

Properties checked on every input:
- parse_ref raises nothing but ReferenceSyntaxError (with and without the path form);
- a parsed reference survives format_ref -> parse_ref unchanged (KV2-INV-003);
- its location's str() and the key/pointer selection never raise outside the error tree.
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  (puts the source tree on sys.path)
import atheris

with atheris.instrument_imports():
    from kv2render.errors import Kv2RenderError, ReferenceSyntaxError
    from kv2render.refs import format_ref, parse_ref

_SAMPLE = {"password": "x", "a": {"b": [1, {"c~/": 2}]}, "": 0}


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    allow_path_form = fdp.ConsumeBool()
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        ref = parse_ref(text, where="fuzz", allow_path_form=allow_path_form)
    except ReferenceSyntaxError:
        return
    again = parse_ref(format_ref(ref), allow_path_form=True)
    if again != ref:
        raise AssertionError(f"round trip changed {ref!r} into {again!r}")
    str(ref.location)
    try:
        ref.select(_SAMPLE)
    except Kv2RenderError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
