"""Keep each fault case's reports on its item, so that a module's FAULTS-SUMMARY line
(helpers.record, KV2-AC-294) counts what really ran and passed, in any order or selection
(KV2-AC-456)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .helpers import REPORTS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report
