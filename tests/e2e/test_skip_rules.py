"""KV2-AC-216: without PostgreSQL the e2e tests skip with the reason; in CI that is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import PG_BINARIES, REQUIRE_ENV, require_postgres


def test_missing_binaries_skip_with_the_reason(tmp_path: Path) -> None:
    """KV2-AC-216: no initdb/pg_ctl/postgres in any candidate directory -> skip, naming them."""
    with pytest.raises(pytest.skip.Exception, match=r"initdb, pg_ctl, postgres.*not found"):
        require_postgres({}, [tmp_path])


def test_missing_binaries_fail_when_postgres_is_required(tmp_path: Path) -> None:
    """KV2-AC-216: with KV2RENDER_REQUIRE_POSTGRES=1 the same condition fails the test."""
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_ENV + "=1 but PostgreSQL"):
        require_postgres({REQUIRE_ENV: "1"}, [tmp_path])


def test_a_complete_bindir_is_used(tmp_path: Path) -> None:
    """KV2-AC-216: the first directory holding all three executables wins."""
    partial, full = tmp_path / "partial", tmp_path / "full"
    for directory, names in ((partial, PG_BINARIES[:2]), (full, PG_BINARIES)):
        directory.mkdir()
        for name in names:
            (directory / name).write_text("#!/bin/sh\n")
            (directory / name).chmod(0o755)
    assert require_postgres({REQUIRE_ENV: "1"}, [partial, full]) == full
