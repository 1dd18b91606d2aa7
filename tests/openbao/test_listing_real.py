"""Change detection by folder listing against the REAL OpenBao server (issue 18).

A private ``bao server -dev`` with a file audit device (OpenBao takes audit devices only
from its config file) counts every request the daemon makes: while nothing changes, one
``secret/detailed-metadata/<folder>/`` listing per poll and no data read; a change is read
once; deletes behave exactly as in read mode; a policy without ``list`` falls back to reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import read_text, wait_for
from tests.openbao.kvreal import (
    assert_no_leak,
    config,
    ref_template,
    running_daemon,
    sentinel,
    status,
    stop_cleanly,
)
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao

INTERVAL = 1.0


class Audit:
    """The server's requests, from its file audit device (one JSON object a line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def paths_since(self, mark: int) -> list[str]:
        """The paths the daemon asked for (reads and lists; the test's own writes left out)."""
        with self.path.open("rb") as fh:
            fh.seek(mark)
            lines = fh.read().splitlines()
        out = []
        for line in lines:
            entry = json.loads(line)
            request = entry.get("request", {})
            if entry.get("type") == "request" and request.get("operation") in ("read", "list"):
                out.append(str(request["path"]))
        return out


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BaoServer, Audit]]:
    from tests.conftest import _bao_or_skip

    _bao_or_skip()
    work = tmp_path_factory.mktemp("bao-audit")
    log = work / "audit.log"
    extra = f'audit "file" "t" {{\n  options = {{\n    file_path = "{log}"\n  }}\n}}\n'
    server = BaoServer.dev_server(work / "server", extra_config=extra)
    try:
        yield server, Audit(log)
    finally:
        server.close()


def _folder_tree(
    server: BaoServer, workdir: Path, folder: str, names: list[str], mode: str, **kw: Any
) -> dict[str, Any]:
    out = workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    templates = [
        ref_template(f"vault+kv2:///secret/data/{folder}/{n}#password", out / n) for n in names
    ]
    tree = config(server, workdir, templates, interval="1s", **kw)
    tree["template_config"]["change_detection"] = mode
    return tree


def _all_rendered(workdir: Path, values: dict[str, str]) -> bool:
    return all(read_text(workdir / "out" / n) == v for n, v in values.items())


def test_unchanged_folder_is_one_listing_per_poll_and_a_change_is_read_once(
    audited: tuple[BaoServer, Audit], workdir: Path
) -> None:
    """KV2-AC-500 KV2-INV-500 KV2-INV-503 KV2-NFR-501: 20 secrets in one folder: while
    nothing changes each poll is one listing and no data read; a new version of one secret
    is on disk within one interval (+2 s) and is the one data read; neither values nor
    custom_metadata reach the debug log."""
    server, audit = audited
    folder = unique("lst")
    names = [f"s{i:02d}" for i in range(20)]
    values = {n: sentinel(f"{folder}-{n}") for n in names}
    for n in names:
        server.kv_put(f"{folder}/{n}", {"password": values[n]})
        server.api(
            "POST",
            f"secret/metadata/{folder}/{n}",
            {"custom_metadata": {"owner": sentinel("custom-metadata")}},
        )
    with running_daemon(workdir, _folder_tree(server, workdir, folder, names, "auto")) as daemon:
        wait_for(lambda: _all_rendered(workdir, values), 20, "first render", proc=daemon)
        time.sleep(1.5 * INTERVAL)
        mark = audit.mark()
        time.sleep(4.2 * INTERVAL)
        quiet = audit.paths_since(mark)
        mark = audit.mark()
        new = sentinel(f"{folder}-new")
        server.kv_put(f"{folder}/s07", {"password": new})
        written = time.monotonic()
        wait_for(lambda: read_text(workdir / "out" / "s07") == new, INTERVAL + 2, "the change")
        took = time.monotonic() - written
        time.sleep(1.5 * INTERVAL)
        after = audit.paths_since(mark)
        log = stop_cleanly(daemon)
    listings = [p for p in quiet if p.startswith("secret/detailed-metadata/")]
    assert [p for p in quiet if p.startswith("secret/data/")] == []
    assert 3 <= len(listings) <= 6, quiet  # one a poll at 1 s +-10 %, for 4.2 s
    assert set(listings) == {f"secret/detailed-metadata/{folder}/"}
    assert len(quiet) == len(listings)  # nothing else: 1 request per poll for 20 secrets
    assert [p for p in after if p.startswith("secret/data/")] == [f"secret/data/{folder}/s07"]
    assert took <= INTERVAL + 2
    assert_no_leak(log, *values.values(), new)


def _outcome(workdir: Path, names: list[str]) -> tuple[Any, ...]:
    doc = status(workdir)
    return (
        [read_text(workdir / "out" / n) for n in names],
        [(t.get("ok"), t.get("last_error")) for t in doc.get("templates", [])],
    )


def test_deletes_behave_exactly_as_in_read_mode(
    audited: tuple[BaoServer, Audit], workdir: Path
) -> None:
    """KV2-AC-501 KV2-INV-500: a soft delete, a destroy and a metadata delete of watched
    secrets give the same files and the same status in listing mode as in read mode."""
    server, _audit = audited
    folder = unique("lstdel")
    names = ["a", "b", "c", "d"]
    values = {n: sentinel(f"{folder}-{n}") for n in names}
    for n in names:
        server.kv_put(f"{folder}/{n}", {"password": values[n]})
    auto, read = workdir / "auto", workdir / "read"
    with (
        running_daemon(auto, _folder_tree(server, auto, folder, names, "auto")) as d1,
        running_daemon(read, _folder_tree(server, read, folder, names, "read")) as d2,
    ):
        for w, d in ((auto, d1), (read, d2)):
            wait_for(lambda w=w: _all_rendered(w, values), 20, "first render", proc=d)
        time.sleep(1.5 * INTERVAL)  # listing mode is polling by listing now
        server.api("DELETE", f"secret/data/{folder}/a")
        server.api("PUT", f"secret/destroy/{folder}/b", {"versions": [1]})
        server.api("DELETE", f"secret/metadata/{folder}/c")

        def settled(w: Path) -> bool:
            templates = status(w).get("templates", [])
            return [t.get("ok") for t in templates] == [False, False, False, True]

        for w, d in ((auto, d1), (read, d2)):
            wait_for(lambda w=w: settled(w), 10, "three errors reported", proc=d)
        time.sleep(1.2 * INTERVAL)  # one more poll each: still the same
        got = {w: _outcome(w, names) for w in (auto, read)}
        logs = [stop_cleanly(d1), stop_cleanly(d2)]
    assert got[auto] == got[read]
    errors = [e or "" for _ok, e in got[auto][1]]
    assert "version 1 is deleted" in errors[0]
    assert "destroyed" in errors[1]
    assert "no secret at this path" in errors[2]
    assert got[auto][0] == [values[n] for n in names]  # the last good files stay
    for log in logs:
        assert_no_leak(log, *values.values())


def test_a_policy_without_list_falls_back_to_reads_and_says_so_once(
    audited: tuple[BaoServer, Audit], workdir: Path
) -> None:
    """KV2-AC-502 KV2-INV-501: a token that may read the secrets but not list the folder:
    one refused listing, one INFO line, then every poll reads; a change still lands."""
    server, audit = audited
    folder = unique("lstpol")
    names = ["a", "b", "c"]
    values = {n: sentinel(f"{folder}-{n}") for n in names}
    for n in names:
        server.kv_put(f"{folder}/{n}", {"password": values[n]})
    policy = unique("readonly")
    server.put_policy(policy, f'path "secret/data/{folder}/*" {{ capabilities = ["read"] }}\n')
    token = server.create_token(policies=[policy], ttl="1h")
    mark = audit.mark()
    tree = _folder_tree(server, workdir, folder, names, "auto", token=token)
    with running_daemon(workdir, tree) as daemon:
        wait_for(lambda: _all_rendered(workdir, values), 20, "first render", proc=daemon)
        time.sleep(4.2 * INTERVAL)
        new = sentinel(f"{folder}-new")
        server.kv_put(f"{folder}/b", {"password": new})
        wait_for(lambda: read_text(workdir / "out" / "b") == new, INTERVAL + 2, "the change")
        paths = audit.paths_since(mark)
        log = stop_cleanly(daemon)
    listing = f"secret/detailed-metadata/{folder}/"
    assert paths.count(listing) == 1
    assert paths.count(f"secret/data/{folder}/a") >= 4  # the first pass and each poll
    said = f"cannot list {listing} (403 permission denied); polling each secret instead"
    assert log.count(said) == 1
    assert_no_leak(log, *values.values(), new)


def test_a_secret_recreated_at_the_same_version_is_refused_until_a_reload(
    audited: tuple[BaoServer, Audit], workdir: Path
) -> None:
    """KV2-AC-509 KV2-FC-501: on the real server, ``metadata delete`` then ``put`` gives
    version 1 again with another created_time. Both modes refuse it (the old file stays, the
    status says why, no value in the log); a SIGHUP follows the re-created secret."""
    import signal

    server, _audit = audited
    folder = unique("lstre")
    names = ["a", "b"]
    values = {n: sentinel(f"{folder}-{n}") for n in names}
    for n in names:
        server.kv_put(f"{folder}/{n}", {"password": values[n]})
    auto, read = workdir / "auto", workdir / "read"
    new = sentinel(f"{folder}-recreated")
    with (
        running_daemon(auto, _folder_tree(server, auto, folder, names, "auto")) as d1,
        running_daemon(read, _folder_tree(server, read, folder, names, "read")) as d2,
    ):
        for w, d in ((auto, d1), (read, d2)):
            wait_for(lambda w=w: _all_rendered(w, values), 20, "first render", proc=d)
        time.sleep(1.5 * INTERVAL)
        server.api("DELETE", f"secret/metadata/{folder}/a")
        assert server.kv_put(f"{folder}/a", {"password": new}) == 1

        def refused(w: Path) -> bool:
            first = (status(w).get("templates") or [{}])[0]
            return "deleted and re-created" in (first.get("last_error") or "")

        for w, d in ((auto, d1), (read, d2)):
            wait_for(lambda w=w: refused(w), 10, "the re-creation refused", proc=d)
        time.sleep(1.2 * INTERVAL)  # another poll each: still refused, old file kept
        kept = {w: read_text(w / "out" / "a") for w in (auto, read)}
        for d in (d1, d2):
            d.proc.send_signal(signal.SIGHUP)
        for w, d in ((auto, d1), (read, d2)):
            wait_for(lambda w=w: read_text(w / "out" / "a") == new, 10, "after SIGHUP", proc=d)
        logs = [stop_cleanly(d1), stop_cleanly(d2)]
    assert kept == {auto: values["a"], read: values["a"]}
    for log in logs:
        assert_no_leak(log, *values.values(), new)
