"""Tests that need ../shared/data skip on a user's clone, and fail instead under CI (tests/dev_data.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dev_data import DEV_DATA_SKIP

TESTS = Path(__file__).resolve().parent

NEEDS_DATA = """
import os
from pathlib import Path

import pytest

DATA = Path(os.environ["PRODMATCH_DEV_DATA"])


@pytest.mark.skipif(not DATA.is_dir(), reason=f"needs ../shared/data (not found at {DATA})")
def test_reads_the_data():
    assert DATA.is_dir()


def test_an_other_skip_stays_a_skip():
    pytest.skip("no GPU here")
"""


def _run(path: Path, data: Path, ci: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env |= {
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PRODMATCH_DEV_DATA": str(data),
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
    }
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "dev_data",
            "-p",
            "no:cacheprovider",
            *args,
            str(path),
        ],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("ci", "present", "summary", "code"),
    [
        (None, False, "2 skipped", 0),
        ("true", False, "1 skipped, 1 error", 1),
        ("true", True, "1 passed, 1 skipped", 0),
    ],
)
def test_a_missing_data_skip_is_an_error_only_under_ci(tmp_path, ci, present, summary, code):
    test_file = tmp_path / "test_needs_data.py"
    test_file.write_text(NEEDS_DATA)
    data = tmp_path / "data"
    if present:
        data.mkdir()
    done = _run(test_file, data, ci, "-c", os.devnull)
    assert done.returncode == code, done.stdout + done.stderr
    assert summary in done.stdout.splitlines()[-1]
    if code:
        assert "CI is set but the development data is missing" in done.stdout
        assert "needs ../shared/data (not found at" in done.stdout


def test_the_quality_cases_skip_with_the_reason_ci_turns_into_an_error():
    spec = importlib.util.spec_from_file_location(
        "quality_cases_tests", TESTS / "quality" / "test_quality_cases.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [mark] = [m for m in [module.pytestmark] if m.name == "skipif"]
    assert mark.kwargs["reason"].startswith(DEV_DATA_SKIP)
    assert mark.args == (not module.DATA.is_dir(),)
