"""TODO docstring."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from prodmatch.errors import ConfigError


@dataclass(frozen=True)
class GoldPair:
    """One line of a gold file."""

    line: int
    source_catalog: str
    source_id: str
    target_catalog: str
    target_id: str
    label: int


def read_gold(path: Path) -> list[GoldPair]:
    """Gold pairs from a CSV file; a malformed line is a clear error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such gold file")
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        required = ["source_catalog", "source_id", "target_catalog", "target_id"]
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(
                f"{path}: missing column(s) {', '.join(missing)}; expected "
                "source_catalog,source_id,target_catalog,target_id[,label]"
            )
        reader.fieldnames = header
        pairs = []
        for line, row in enumerate(reader, start=2):
            values = {k: (row.get(k) or "").strip() for k in [*required, "label"]}
            if not any(values.values()):
                continue
            if not all(values[c] for c in required):
                raise ConfigError(f"{path}:{line}: empty field in {','.join(values[c] for c in required)!r}")
            label = values["label"] or "1"
            if label not in ("0", "1"):
                raise ConfigError(
                    f"{path}:{line}: label must be 1 (same product) or 0 (non-match), got {label!r}"
                )
            pairs.append(GoldPair(line, *(values[c] for c in required), int(label)))
    if not pairs:
        raise ConfigError(f"{path}: no gold pairs")
    return pairs
