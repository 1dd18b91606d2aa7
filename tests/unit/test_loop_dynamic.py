"""The daemon and secret paths computed while rendering (KV2-INV-392): scripted ticks, fake clock.

The harness is tests/unit/test_loop.py's: our FakeSecretStore counting reads per location, a
fake disk counting writes per destination.
"""

from __future__ import annotations

from pathlib import Path

from kv2render.config import TemplateSpec
from kv2render.refs import SecretLocation

from .test_loop import POLL, SENTINEL, Do, Harness, make_config

POINTER = (
    '{{ with secret "secret/data/ptr" }}'
    '{{ with secret (printf "secret/data/%s" .Data.data.target) }}{{ .Data.data.pw }}{{ end }}'
    "{{ end }}"
)


def loc(path: str) -> SecretLocation:
    return SecretLocation("secret", path)


def template(index: int, contents: str, syntax: str = "consul-template") -> TemplateSpec:
    return TemplateSpec(
        index=index,
        destination=Path(f"/out/t{index}"),
        contents=contents,
        syntax=syntax,  # type: ignore[arg-type]
    )


def harness() -> Harness:
    h = Harness(
        make_config(
            template(0, POINTER),
            template(1, '{{ with secret "secret/data/other" }}{{ .Data.data.pw }}{{ end }}'),
            template(2, '{{ kv2("vault+kv2:///secret/data/" ~ "b" ~ "#pw") }}', "jinja2"),
        )
    )
    h.store.put("secret/ptr", target="a")
    h.store.put("secret/a", pw="a1")
    h.store.put("secret/b", pw="b1")
    h.store.put("secret/other", pw=SENTINEL)
    return h


def test_a_new_version_of_a_computed_secret_rerenders_only_its_templates() -> None:
    """KV2-AC-394 KV2-INV-392: secrets found while rendering are polled like constant ones;
    a new version of one re-renders exactly the templates whose last render used it."""
    h = harness()
    assert h.run() == 0
    assert [h.content(i) for i in range(3)] == [b"a1", SENTINEL.encode(), b"b1"]
    assert all(n == 1 for n in h.store.reads.values()), h.store.reads  # one read each
    assert set(h.store.reads) == {loc("ptr"), loc("a"), loc("b"), loc("other")}

    h.run(POLL, Do(lambda: h.store.put("secret/a", pw="a2")), POLL)
    assert h.store.reads[loc("a")] == 3  # polled with the others: once per interval
    assert h.content(0) == b"a2"
    assert [h.writes(i) for i in range(3)] == [2, 1, 1]  # only template 0 used secret/a

    h.run(Do(lambda: h.store.put("secret/b", pw="b2")), POLL)
    assert [h.writes(i) for i in range(3)] == [2, 1, 2]  # only template 2 used secret/b
    # The status file shows the computed secret and its version, as for a constant one.
    assert h.last_status()["templates"][2]["secrets"] == [
        {"mount": "secret", "path": "b", "pinned_version": None, "version": 2}
    ]


def test_a_changed_pointer_moves_the_template_to_its_new_secret() -> None:
    """KV2-INV-392: when a render computes another path, the template follows the new
    secret, and the one it no longer uses stops being polled."""
    h = harness()
    assert h.run() == 0
    h.run(Do(lambda: h.store.put("secret/ptr", target="b")), POLL)
    assert h.content(0) == b"b1"
    reads_of_a = h.store.reads[loc("a")]
    h.run(POLL, POLL)
    assert h.store.reads[loc("a")] == reads_of_a  # no template uses secret/a any more
    h.run(Do(lambda: h.store.put("secret/b", pw="b2")), POLL)
    assert h.content(0) == b"b2" and h.content(2) == b"b2"
    assert h.writes(1) == 1
