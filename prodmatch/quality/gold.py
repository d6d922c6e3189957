"""Gold files: pairs of products a person has already judged the same (or not). The one reader of that format.

Format (`prodmatch eval --gold` and `prodmatch finetune --gold` read the same files):

- one pair per line: `source_catalog, source_id, target_catalog, target_id[, label]`, ids being the products'
  `external_id` in those catalogues;
- the delimiter is whichever of `,` `;` tab `|` the first non-blank line has most of; cells may be quoted;
- an optional first line is a header naming the four columns (and `label`) in any order, case-insensitive;
  a first line that names some of them but not all is an error;
- `label` is `1`/`true`/`yes` (the same product, the default when the cell is absent or empty) or
  `0`/`false`/`no` (known not the same product);
- blank lines are skipped; the file is UTF-8, with or without a byte-order mark.

`read_gold_file` returns the pairs and one message (file, line, field) per unusable line, for callers that go on
without them (fine-tuning); `read_gold` raises the first such problem (evaluation). Neither looks the products
up: `quality.evaluate` and `quality.finetune` do that against the database.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prodmatch.errors import ConfigError

GOLD_COLUMNS = ("source_catalog", "source_id", "target_catalog", "target_id")
GOLD_HEADER = (*GOLD_COLUMNS, "label")  # the header prodmatch writes (review labels, the demo's splits)
LABELS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "": 1}
_DELIMITERS = ",;\t|"
_EXPECTED = ",".join(GOLD_COLUMNS) + ",label"


@dataclass(frozen=True)
class GoldPair:
    """One usable line of a gold file: 1 for the same product, 0 for a known non-match."""

    line: int
    source_catalog: str
    source_id: str
    target_catalog: str
    target_id: str
    label: int


@dataclass(frozen=True)
class GoldFile:
    """What a gold file holds: its usable pairs, and a message (file, line, reason) for each unusable line."""

    path: Path
    pairs: list[GoldPair]
    problems: dict[int, str]  # line number -> message, in line order


def read_gold(path: Path) -> list[GoldPair]:
    """The pairs of a gold file; any unusable line, or a file without pairs, raises ConfigError naming it."""
    gold = read_gold_file(path)
    if gold.problems:
        raise ConfigError(next(iter(gold.problems.values())))
    if not gold.pairs:
        raise ConfigError(f"{gold.path}: no gold pairs")
    return gold.pairs


def read_gold_file(path: Path) -> GoldFile:
    """The usable pairs of a gold file and a message per unusable line; an unreadable file raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"gold file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read gold file {path}: {error}") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    delimiter = max(_DELIMITERS, key=first.count)
    pairs: list[GoldPair] = []
    problems: dict[int, str] = {}
    columns: dict[str, int] | None = None
    width = len(GOLD_COLUMNS) + 1  # without a header: the four columns and an optional label
    for number, cells in _records(lines, delimiter):
        first_record = columns is None
        if first_record:
            columns = _header(path, number, cells)
            if columns is not None:
                width = len(cells)
                continue
            columns = {name: i for i, name in enumerate((*GOLD_COLUMNS, "label"))}
        problem = _problem(path, number, cells, columns, width, delimiter)
        if problem and first_record and len(cells) < len(GOLD_COLUMNS):
            # A short first line is as likely a header with other names as a pair: say both.
            problem = (
                f"{path}:{number}: neither a header (missing column(s) {', '.join(GOLD_COLUMNS)}) nor a pair:"
                f" expected {_EXPECTED} (label optional), got {delimiter.join(cells)!r}"
            )
        if problem:
            problems[number] = problem
            continue
        values = [cells[columns[name]] for name in GOLD_COLUMNS]
        pairs.append(GoldPair(number, *values, LABELS[_label_text(cells, columns).lower()]))
    return GoldFile(path, pairs, problems)


def _records(lines: list[str], delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each line that is not blank (nor only delimiters)."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            cells = [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))]
            if any(cells):
                yield number, cells


def _header(path: Path, number: int, cells: list[str]) -> dict[str, int] | None:
    """Column positions when `cells` is a header (names any gold column), else None; a partial header raises."""
    names = [cell.lower() for cell in cells]
    if not set(names) & {*GOLD_COLUMNS, "label"}:
        return None
    missing = [name for name in GOLD_COLUMNS if name not in names]
    if missing:
        raise ConfigError(
            f"{path}:{number}: missing column(s) {', '.join(missing)} in the header; expected {_EXPECTED}"
            " (label optional)"
        )
    columns = {name: names.index(name) for name in GOLD_COLUMNS}
    columns["label"] = names.index("label") if "label" in names else len(names)
    return columns


def _problem(
    path: Path, number: int, cells: list[str], columns: dict[str, int], width: int, delimiter: str
) -> str | None:
    """Why this line is not a usable pair (file, line and field), or None when it is."""
    got = delimiter.join(cells)
    if len(cells) > width or any(columns[name] >= len(cells) for name in GOLD_COLUMNS):
        return f"{path}:{number}: expected {_EXPECTED} (label optional), got {got!r}"
    empty = [name for name in GOLD_COLUMNS if not cells[columns[name]]]
    if empty:
        return f"{path}:{number}: empty field {', '.join(empty)} in {got!r}"
    label = _label_text(cells, columns)
    if label.lower() not in LABELS:
        return f"{path}:{number}: label must be 1 (same product) or 0, got {label!r}"
    return None


def _label_text(cells: list[str], columns: dict[str, int]) -> str:
    return cells[columns["label"]] if columns["label"] < len(cells) else ""
