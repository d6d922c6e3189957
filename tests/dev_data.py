"""The development data's skip rule, as a pytest plugin (tests/conftest.py loads it).

Tests that read the development data (../shared/data beside the repository, or where PRODMATCH_DEV_DATA points)
skip with a reason that starts with DEV_DATA_SKIP, so the README's test command passes on a user's clone. CI has
the data: there (CI=true, as CI runs .ci/run) such a skip is turned into a failure, so a moved or missing folder
can never make CI silently stop running those tests.
"""

from __future__ import annotations

import os

import pytest

DEV_DATA_SKIP = "needs ../shared/data"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and running_in_ci() and _skip_reason(report).startswith(DEV_DATA_SKIP):
        report.outcome = "failed"
        report.longrepr = (
            f"CI is set but the development data is missing, so this test would skip: {_skip_reason(report)}"
        )


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_reason(report: pytest.TestReport) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")
