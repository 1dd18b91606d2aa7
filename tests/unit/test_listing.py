"""Change detection by folder listing (issue 18), on the fake store and the scripted loop.

The decision (daemon/polling.py ``by_folder``/``unchanged``), the lister's memory
(daemon/listing.py) and the loop (daemon/loop.py) with the FakeSecretStore, whose
``list_folder`` is pinned to the real store by tests/contract (KV2-AC-507).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import Config, TemplateSpec
from kv2render.daemon import listing as daemon_listing
from kv2render.daemon import polling
from kv2render.daemon.ticks import ReloadRequested
from kv2render.errors import TransientError
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation
from kv2render.store.listing import FolderVersions, KeyState, NotOffered
from tests.fakes import FakeSecretStore
from tests.unit.test_loop import POLL, Do, Harness, make_config, spec

SENTINEL = "s3ntinel-LISTING-91c2"
NAMES = ("s0", "s1", "s2", "s3")


def loc(name: str, folder: str = "app/") -> SecretLocation:
    return SecretLocation("secret", f"{folder}{name}")


def folder_harness(*, detection: str = "auto", names: tuple[str, ...] = NAMES) -> Harness:
    cfg = make_config(*(spec(i, f"vault+kv2:///secret/app/{n}#pw") for i, n in enumerate(names)))
    cfg = replace(cfg, template_config=replace(cfg.template_config, change_detection=detection))
    h = Harness(cfg, store=FakeSecretStore(listing=True))
    for n in names:
        h.store.put(f"secret/app/{n}", pw=f"{SENTINEL}-{n}-1")
    return h


def reads(h: Harness) -> int:
    return sum(h.store.reads.values())


def listings(h: Harness) -> int:
    return sum(h.store.listings.values())


# -- the decision ---------------------------------------------------------------------------------


def _cached(location: SecretLocation, version: int) -> SecretVersion:
    return SecretVersion(location, version, {"pw": "x"}, {})


def test_unchanged_is_only_present_same_version_and_plain() -> None:
    """KV2-AC-503 KV2-INV-500: a member is unchanged only when the listing shows it, at the
    cached version, neither deleted nor destroyed; everything else is read."""
    members = {n: loc(n) for n in ("same", "newer", "deleted", "missing", "uncached")}
    cache = {loc(n): _cached(loc(n), 3) for n in ("same", "newer", "deleted", "missing")}
    listed = FolderVersions(
        {
            "same": KeyState(3, True),
            "newer": KeyState(4, True),
            "deleted": KeyState(3, False),
            "uncached": KeyState(1, True),
        },
        1,
    )
    assert polling.unchanged(listed, members, cache) == {loc("same")}


def test_by_folder_groups_latest_versions_and_skips_pinned() -> None:
    """KV2-AC-503 KV2-INV-500: groups by (mount, folder); pinned versions are never listed."""
    got = polling.by_folder(
        [
            loc("a"),
            loc("b"),
            loc("c", "other/"),
            SecretLocation("secret", "top"),
            SecretLocation("secret", "app/p", 2),
        ]
    )
    assert got == {
        ("secret", "app/"): {"a": loc("a"), "b": loc("b")},
        ("secret", "other/"): {"c": loc("c", "other/")},
        ("secret", ""): {"top": SecretLocation("secret", "top")},
    }


# -- the loop -------------------------------------------------------------------------------------


def test_unchanged_folder_costs_one_listing_and_no_read_per_poll() -> None:
    """KV2-AC-503 KV2-INV-500: after the first pass (which reads everything), each poll of an
    unchanged folder is one listing and no read; nothing is rendered or written again."""
    h = folder_harness()
    h.run(POLL)
    assert reads(h) == len(NAMES) and listings(h) == 1
    h.run(POLL, POLL, POLL)
    assert reads(h) == len(NAMES)  # no new read
    assert listings(h) == 4
    assert all(h.writes(i) == 1 for i in range(len(NAMES)))


def test_a_new_version_is_read_once_and_rendered() -> None:
    """KV2-AC-503 KV2-INV-500: a listing that shows a new version reads that secret only."""
    h = folder_harness()
    h.run(POLL, Do(lambda: h.store.put("secret/app/s2", pw="new")), POLL)
    assert h.content(2) == b"new"
    assert h.store.reads[loc("s2")] == 2
    assert all(h.store.reads[loc(n)] == 1 for n in NAMES if n != "s2")


def test_deleted_and_destroyed_are_read_and_fail_as_in_read_mode() -> None:
    """KV2-AC-503 KV2-INV-500: a deleted or destroyed current version is read, so the error
    and the kept file are those of read mode."""
    outcomes: dict[str, Any] = {}
    for mode in ("auto", "read"):
        h = folder_harness(detection=mode)
        h.run(
            POLL,
            Do(lambda h=h: h.store.delete("secret/app/s1")),
            Do(lambda h=h: h.store.destroy("secret/app/s3", (1,))),
            POLL,
        )
        doc = h.last_status()
        outcomes[mode] = (
            [h.content(i) for i in range(len(NAMES))],
            [(t["ok"], t.get("last_error")) for t in doc["templates"]],
        )
    assert outcomes["auto"] == outcomes["read"]
    errors = [e for ok, e in outcomes["auto"][1] if not ok]
    assert any("version 1 is deleted" in (e or "") for e in errors)
    assert any("destroyed" in (e or "") for e in errors)


def test_read_mode_never_lists() -> None:
    """KV2-AC-503 KV2-FC-500: ``change_detection: read`` reads every due secret."""
    h = folder_harness(detection="read")
    h.run(POLL, POLL, POLL)  # the first pass and three polls
    assert listings(h) == 0 and reads(h) == 4 * len(NAMES)


def test_one_secret_in_a_folder_is_read_not_listed() -> None:
    """KV2-AC-503 KV2-INV-502: a listing must cost fewer requests than the reads it replaces."""
    h = folder_harness(names=("only",))
    h.run(POLL, POLL, POLL)
    assert listings(h) == 0 and reads(h) == 4


def test_a_failed_listing_reads_the_group_and_lists_again_next_poll() -> None:
    """KV2-AC-503 KV2-INV-501 KV2-FC-502: a listing failing for another reason (a 5xx) is
    not a refusal: the group is read this poll, and listed again once its rest (a minute
    here, less than this poll interval) is over."""
    h = folder_harness()
    h.run(POLL)
    h.store.list_fail = TransientError("server error (503)", where="secret/app/")
    h.run(POLL)
    assert reads(h) == 2 * len(NAMES)
    h.store.list_fail = None
    h.run(POLL)
    assert reads(h) == 2 * len(NAMES) and listings(h) == 3


def test_not_offered_is_remembered_said_once_and_probed_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KV2-AC-503 KV2-INV-501: a folder whose listing is refused is read each poll, said once
    at INFO, not probed again every poll; probed again after an hour and at a reload."""
    h = folder_harness()
    h.store.unlistable.add(("secret", "app/"))
    h.kw = {"reload_config": lambda: h.cfg}
    with caplog.at_level(logging.INFO, logger="kv2render.daemon.listing"):
        h.run(POLL, POLL, POLL, POLL)
    assert listings(h) == 1
    assert reads(h) == 5 * len(NAMES)
    # This module's lines only: whether the runner's INFO lines reach caplog depends on the
    # level an earlier test left on the "kv2render" logger.
    said = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and r.name == "kv2render.daemon.listing"
    ]
    assert said == [
        "cannot list secret/detailed-metadata/app/ (403 permission denied); polling each "
        "secret instead (probed again in 60 min or on reload)"
    ]
    jumps = int(daemon_listing.RECHECK // POLL.seconds) + 1
    h.run(*[POLL] * jumps)
    assert listings(h) == 2  # probed again after RECHECK
    h.run(ReloadRequested("SIGHUP"), POLL)
    assert listings(h) == 3  # and at a reload


def test_a_listing_that_hides_existing_secrets_is_not_trusted() -> None:
    """KV2-AC-503 KV2-INV-501: a server that answers an empty listing for a folder whose
    secrets then read fine does not offer the listing: the folder is read from then on."""
    h = folder_harness()
    h.run(POLL)

    def empty(*_a: Any, **_k: Any) -> FolderVersions:
        h.store.listings[("secret", "app/")] += 1
        return FolderVersions({}, 1)

    h.store.list_folder = empty  # type: ignore[method-assign]
    h.run(POLL, POLL, POLL)
    assert listings(h) == 2  # once more, then remembered
    assert reads(h) == 4 * len(NAMES)


def test_a_failing_template_reads_its_secrets_as_in_read_mode() -> None:
    """KV2-AC-503 KV2-INV-162: a failing template's secrets are read at each poll, so it
    recovers at the first good poll, as in read mode."""
    h = folder_harness()
    h.run(POLL)
    h.store.put("secret/app/s0", pw="two")
    h.store.fail[loc("s0")] = TransientError("server error (503)", where="secret/app/s0")
    h.run(POLL)
    assert not h.last_status()["templates"][0]["ok"]
    del h.store.fail[loc("s0")]
    before = h.store.reads[loc("s0")]
    h.run(POLL)
    assert h.store.reads[loc("s0")] == before + 1
    assert all(t["ok"] for t in h.last_status()["templates"])
    assert h.content(0) == b"two"


def test_listing_mode_logs_no_values_and_no_custom_metadata(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KV2-AC-503 KV2-INV-503: at debug level, listing mode logs no secret value."""
    h = folder_harness()
    # On the "kv2render" logger itself: a level an earlier test left there must not make
    # this check vacuous.
    with caplog.at_level(logging.DEBUG, logger="kv2render"):
        h.run(POLL, Do(lambda: h.store.put("secret/app/s1", pw=f"{SENTINEL}-new")), POLL, POLL)
    assert any(r.name == "kv2render.daemon.listing" for r in caplog.records)
    assert SENTINEL not in caplog.text


def test_not_offered_reason_is_metadata_only() -> None:
    """KV2-AC-503: NotOffered carries a status and the server's short text, nothing else."""
    assert repr(NotOffered("403 permission denied")) == "NotOffered(reason='403 permission denied')"


def test_change_detection_choices_are_validated(tmp_path: Any) -> None:
    """KV2-AC-506 KV2-FC-500: auto and read are accepted in YAML and agent HCL; another value
    is a ConfigError (exit 2) naming the key and the choices."""
    from kv2render.config import load
    from kv2render.errors import ConfigError

    token = tmp_path / "token"
    token.write_text("t", encoding="utf-8")
    token.chmod(0o600)
    base = (
        "vault: {address: 'http://127.0.0.1:8200'}\n"
        f"auto_auth: {{method: {{type: token_file, config: {{token_file_path: '{token}'}}}}}}\n"
        f"template: [{{ref: 'vault+kv2:///secret/a#pw', destination: '{tmp_path}/out'}}]\n"
    )
    for value, expect in (("auto", "auto"), ("read", "read")):
        path = tmp_path / f"{value}.yaml"
        path.write_text(base + f"template_config: {{change_detection: {value}}}\n")
        assert load(path).template_config.change_detection == expect
    path = tmp_path / "default.yaml"
    path.write_text(base)
    assert load(path).template_config.change_detection == "auto"
    path = tmp_path / "bad.yaml"
    path.write_text(base + "template_config: {change_detection: listing}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.exit_code == 2
    text = str(caught.value)
    assert "template_config.change_detection" in text and "auto, read" in text
    hcl = tmp_path / "agent.hcl"
    hcl.write_text(
        'vault { address = "http://127.0.0.1:8200" }\n'
        'auto_auth {\n  method {\n    type = "token_file"\n'
        f'    config = {{ token_file_path = "{token}" }}\n  }}\n}}\n'
        'template_config {\n  change_detection = "read"\n}\n'
        f'template {{\n  contents = "x"\n  destination = "{tmp_path}/hcl-out"\n}}\n'
    )
    cfg: Config = load(hcl)
    assert cfg.template_config.change_detection == "read"


def test_listing_counter_has_bounded_labels_and_reads_stay_truthful() -> None:
    """KV2-AC-503 KV2-NFR-500: listings are counted by mount and result only; the read
    counter counts the reads made, not the secrets a listing showed unchanged."""
    from prometheus_client import generate_latest

    from kv2render.daemon.metrics import PrometheusRecorder

    rec = PrometheusRecorder(stale_after=900)
    h = folder_harness()
    h.kw = {}
    h.build()
    h.daemon.metrics = rec
    h.daemon.lister._on_listing = rec.listing
    h.run(POLL, POLL, Do(lambda: h.store.put("secret/app/s1", pw="v2")), POLL)
    text = generate_latest(rec.registry).decode()
    assert 'kv2render_folder_listings_total{mount="secret",result="ok"} 3.0' in text
    read_lines = [
        line for line in text.splitlines() if line.startswith("kv2render_secret_reads_total{")
    ]
    counts = {line.split('path="')[1].split('"')[0]: float(line.split()[-1]) for line in read_lines}
    assert counts == {"app/s0": 1.0, "app/s1": 2.0, "app/s2": 1.0, "app/s3": 1.0}


def test_a_403_while_the_token_was_bad_is_not_remembered() -> None:
    """KV2-AC-503 KV2-INV-501: a listing refused with 403 in a pass whose reads had to log in
    again (OpenBao's bare "permission denied" to an expired token) is listed again next poll."""
    h = folder_harness()
    h.run(POLL)
    h.store.unlistable.add(("secret", "app/"))
    h.store.put("secret/app/s0", pw="two")  # one secret to read in this pass
    original = h.store.read

    def relogin_once(location: SecretLocation) -> SecretVersion:
        h.store.read = original  # type: ignore[method-assign]
        h.store.login()  # what HvacSecretStore.read does on a 403 from a bad token
        return original(location)

    h.store.read = relogin_once  # type: ignore[method-assign]
    h.run(POLL)
    h.store.unlistable.clear()
    before = reads(h)
    h.run(POLL)
    assert listings(h) == 3  # listed again at once, not an hour later
    assert reads(h) == before  # and it showed every secret unchanged


# -- a secret deleted and re-created at the same version number ------------------------------------


@pytest.mark.parametrize("detection", ["auto", "read"])
def test_recreated_at_the_same_version_is_refused_in_both_modes(detection: str) -> None:
    """KV2-AC-508 KV2-FC-501: ``kv metadata delete`` then ``put`` between two polls gives
    version 1 again with another created_time. Version numbers alone would call it
    unchanged and keep the old password for good; both modes refuse it as FC-280 refuses a
    lower number (the last good file stays, the status names the re-creation), and a reload
    follows the new secret."""
    h = folder_harness(detection=detection)
    h.kw = {"reload_config": lambda: h.cfg}
    h.run(POLL)
    before = reads(h)
    h.store.recreate("secret/app/s1", pw=f"{SENTINEL}-s1-new")
    h.run(POLL)
    if detection == "auto":
        # one listing; only the re-created secret is read (the listing showed it differs)
        assert reads(h) - before == 1
    assert h.content(1) == f"{SENTINEL}-s1-1".encode()
    error = h.last_status()["templates"][1]["last_error"]
    assert "deleted and re-created" in error and SENTINEL not in error
    h.run(POLL)  # still refused: the memory holds until a reload
    assert h.content(1) == f"{SENTINEL}-s1-1".encode()
    h.run(ReloadRequested(), POLL)
    assert h.content(1) == f"{SENTINEL}-s1-new".encode()
    assert h.content(0) == f"{SENTINEL}-s0-1".encode()


def test_recreated_needs_both_creation_times() -> None:
    """KV2-AC-508: a server that sends no created_time is trusted as before; a listing entry
    carries the current version's created_time."""
    old = SecretVersion(loc("s0"), 1, {"pw": "x"}, {"created_time": "2026-12-07T06:00:00Z"})
    assert polling.recreated(old, 1, {"created_time": "2026-12-07T07:00:00Z"})
    assert not polling.recreated(old, 1, {"created_time": "2026-12-07T06:00:00Z"})
    assert not polling.recreated(old, 1, {"created_time": ""})
    assert not polling.recreated(old, 1, {})
    assert not polling.recreated(old, 2, {"created_time": "2026-12-07T07:00:00Z"})
    bare = SecretVersion(loc("s0"), 1, {"pw": "x"}, {})
    assert not polling.recreated(bare, 1, {"created_time": "2026-12-07T07:00:00Z"})
    got = FolderVersions({"s0": KeyState(1, True, "2026-12-07T07:00:00Z")}, 1)
    assert polling.unchanged(got, {"s0": loc("s0")}, {loc("s0"): old}) == set()
    same = FolderVersions({"s0": KeyState(1, True, "2026-12-07T06:00:00Z")}, 1)
    assert polling.unchanged(same, {"s0": loc("s0")}, {loc("s0"): old}) == {loc("s0")}


def test_a_listing_lists_no_more_keys_than_the_reads_would_cost() -> None:
    """KV2-AC-510 KV2-INV-502: pages of ``2 * watched + 8`` keys (at most 500), one page up to
    246 watched names, never as many requests as reads; two watched secrets spread among a
    hundred other keys are not listed (the server would read 100 metadata entries to spare
    two reads) but read, and that refusal is remembered."""
    from kv2render.store import listing as store_listing

    assert [store_listing.page_limit(n) for n in (2, 4, 100, 246, 300)] == [12, 16, 208, 500, 500]
    assert [store_listing.max_pages(n) for n in (2, 3, 100, 246, 247, 1000)] == [1, 1, 1, 1, 2, 5]
    h = folder_harness(names=("a0", "z9"))
    for i in range(100):
        h.store.put(f"secret/app/m{i:03d}", pw="unwatched")
    h.run(POLL, POLL, POLL)
    assert listings(h) == 1  # refused once ("too many keys"), then remembered
    assert reads(h) == 4 * 2
    near = folder_harness(names=("s0", "s1"))
    for i in range(100):
        near.store.put(f"secret/app/t{i:03d}", pw="unwatched")  # after the watched names
    near.run(POLL, POLL, POLL)
    assert listings(near) == 3 and reads(near) == 2  # the first pass reads; polls list


def test_a_listing_failing_in_a_row_rests_longer_each_time_and_recovers() -> None:
    """KV2-AC-514 KV2-FC-502: each failure in a row doubles the listing's rest (60 s, 120 s,
    240 s, ... up to an hour); every poll in between reads the folder's secrets, so no
    update waits on the listing; one success ends the streak."""
    h = folder_harness()  # polls every 111 s (scripted clock)
    h.run(POLL)  # t=111: listed, all unchanged
    assert (listings(h), reads(h)) == (1, len(NAMES))
    h.store.list_fail = TransientError("server error (500)", where="secret/app/")
    for _ in range(7):  # t=222 ... 888
        h.run(POLL)
    # Listed (and failed) at 222 (rest 60 s), 333 (120 s), 555 (240 s) and 888 (480 s);
    # skipped at 444, 666 and 777. Every one of those seven polls read all four secrets.
    assert listings(h) == 5
    assert reads(h) == len(NAMES) * 8
    h.store.list_fail = None
    h.store.put("secret/app/s2", pw=f"{SENTINEL}-s2-2")
    h.run(POLL)  # t=999: still resting (until 1368): read, and the new version lands
    assert h.content(2) == f"{SENTINEL}-s2-2".encode()
    for _ in range(4):  # t=1110 ... 1443: listed again at 1443, fine: the streak ends
        h.run(POLL)
    assert listings(h) == 6
    before = reads(h)
    h.store.list_fail = TransientError("server error (500)", where="secret/app/")
    h.run(POLL)  # one failure after the streak ended: a minute's rest, not 960 s
    h.store.list_fail = None
    h.run(POLL)  # so the next poll lists again, and reads nothing
    assert listings(h) == 8 and reads(h) - before == len(NAMES)


def test_timestamp_precision_change_is_not_a_recreation() -> None:
    """KV2-AC-511 KV2-FC-501: the same instant written with another precision (OpenBao
    2.4.3 moved KV timestamps from RFC3339 to RFC3339Nano, GH-1872) is the same version;
    another instant at the same number is a re-creation."""
    same = polling.same_instant
    assert same("2026-12-07T06:00:00Z", "2026-12-07T06:00:00.123456789Z")
    assert same("2026-12-07T06:00:00.5Z", "2026-12-07T06:00:00.500Z")
    assert same("2026-12-07T06:00:00.123456Z", "2026-12-07T06:00:00.123456789Z")
    assert same("2026-12-07T06:00:00Z", "2026-12-07T06:00:00+00:00")
    assert not same("2026-12-07T06:00:00.123Z", "2026-12-07T06:00:00.124Z")
    assert not same("2026-12-07T06:00:01Z", "2026-12-07T06:00:00.999Z")
    assert not same("not a time", "2026-12-07T06:00:00Z")
    old = SecretVersion(loc("s0"), 1, {"pw": "x"}, {"created_time": "2026-12-07T06:00:00Z"})
    assert not polling.recreated(old, 1, {"created_time": "2026-12-07T06:00:00.25Z"})
    assert polling.recreated(old, 1, {"created_time": "2026-12-07T06:00:01.25Z"})


@pytest.mark.parametrize("detection", ["auto", "read"])
def test_a_server_upgrade_changing_timestamp_precision_keeps_every_template_ok(
    detection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-511 KV2-FC-501: after the server starts writing created_time with
    nanoseconds, the same versions are not "deleted and re-created", in both modes."""
    import tests.fakes as fakes

    h = folder_harness(detection=detection)
    whole = fakes._stamp
    monkeypatch.setattr(fakes, "_stamp", lambda c: whole(int(c)))  # seconds only
    h.run(POLL)
    monkeypatch.setattr(fakes, "_stamp", lambda c: whole(int(c)).replace("Z", ".000000001Z"))
    h.run(POLL, POLL)
    for t in h.last_status()["templates"]:
        assert t["ok"], t.get("last_error")


@pytest.mark.parametrize("detection", ["auto", "read"])
def test_custom_metadata_changed_without_a_version_is_the_same_in_both_modes(
    detection: str,
) -> None:
    """KV2-AC-513 KV2-INV-504: custom_metadata changes without a new version. Read mode
    caches it at every poll; listing mode sees the digest differ and reads that secret, so a
    template rendered later (another secret changed) shows the same text in both modes."""
    text = (
        '{{ secret("secret/data/app/s0").Data.metadata.custom_metadata.owner }}-'
        '{{ secret("secret/data/app/s1").Data.data.pw }}'
    )
    cfg = make_config(
        spec(0, "vault+kv2:///secret/app/s2#pw"),
        TemplateSpec(index=1, destination=Path("/out/t1"), contents=text),
    )
    cfg = replace(cfg, template_config=replace(cfg.template_config, change_detection=detection))
    h = Harness(cfg, store=FakeSecretStore(listing=True))
    for n in ("s0", "s1", "s2"):
        h.store.put(f"secret/app/{n}", pw=f"{SENTINEL}-{n}-1")
    h.store.set_custom_metadata("secret/app/s0", {"owner": "old"})
    h.run(POLL)
    before = reads(h)
    h.store.set_custom_metadata("secret/app/s0", {"owner": "new"})
    h.run(POLL)
    if detection == "auto":
        assert reads(h) - before == 1  # only the secret whose metadata changed
    h.store.put("secret/app/s1", pw=f"{SENTINEL}-s1-2")
    h.run(POLL)
    assert h.content(1) == f"new-{SENTINEL}-s1-2".encode()


@pytest.mark.parametrize("detection", ["auto", "read"])
def test_a_lost_read_permission_shows_within_the_hour_in_both_modes(detection: str) -> None:
    """KV2-AC-515 KV2-INV-505: a policy that loses `read` on a secret but keeps `list` on
    its folder: read mode sees the 403 at the next poll; listing mode reads every secret at
    least once an hour whatever the listings say, so it sees it within the hour too."""
    h = folder_harness(detection=detection)
    h.run(POLL)
    h.store.deny("secret/app/s1")
    polls = 0
    while h.last_status()["templates"][1]["ok"]:
        h.run(POLL)
        polls += 1
        assert polls * POLL.seconds <= daemon_listing.REREAD + 2 * POLL.seconds, polls
    if detection == "read":
        assert polls == 1
    assert h.content(1) == f"{SENTINEL}-s1-1".encode()  # the last good file stays
    assert h.last_status()["templates"][0]["ok"]
