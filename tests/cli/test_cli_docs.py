"""Every command has help with an example and is documented in the README (as sqlite-utils' test_docs does)."""

from __future__ import annotations

import click
import pytest
from builders import REPO
from click.testing import CliRunner

from prodmatch.cli import main


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found += _commands(command, path)
        else:
            found.append((path, command))
    return found


COMMANDS = _commands(main)


def test_the_walk_finds_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"link", "matcher train", "explain", "db status", "review", "labels export"} <= names
    assert len(names) >= 25


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_help_with_an_example_and_is_in_the_readme(path):
    command = dict(COMMANDS)[path]
    assert command.help and len(command.help.split()) >= 5, f"{' '.join(path)} has no real help"
    shown = CliRunner().invoke(main, [*path, "--help"])
    assert shown.exit_code == 0
    assert f"Example: prodmatch {' '.join(path)}" in shown.output, f"{' '.join(path)}: no example in its help"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"prodmatch {' '.join(path)}" in readme, f"prodmatch {' '.join(path)} is not in the README"


def test_a_library_error_is_a_one_line_error_in_every_group(settings):
    # The error wrapper is on the group classes, so sub-commands get it without a decorator each.
    done = CliRunner().invoke(main, ["--database-url", settings.database_url, "matcher", "drop", "nope"])
    assert done.exit_code == 1
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert "Error: no matcher named 'nope'" in done.output
