"""End-to-end linking cases built from the development pair files in ../shared/data (see its README).

A pair file lists (left offer, right offer, label) triples. A case turns it into what a user has: two catalogue
files and a gold file. Catalogue A holds the distinct left offers, B the distinct right offers, and the gold
pairs are the A x B pairs of one product: the label-1 pairs closed transitively (same product is an
equivalence), or for WDC Products equal cluster_id.

The WDC files reuse one pool of offers on both sides (most left offers are also right offers), which would make
every such offer its own trivial match. There the pool is split instead: each distinct offer goes to A or B by a
hash of its key, so no offer is in both catalogues; a file whose sides overlap little (Walmart-Amazon) keeps its
sides. Training cases come from the train file, test cases from the test (or validation) file.

    python benchmarks/quality_cases.py OUT_DIR        # writes every case, prints their sizes

`load_case` gives the products in memory (for benchmarks/quality_offline.py); `build_case` writes the files
in prodmatch's ingest format (JSONL: id, title, brand, category, description, price, currency, attributes) and
its gold format (CSV: source_catalog, source_id, target_catalog, target_id, label).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# ../shared/data beside the repository, or where PRODMATCH_DEV_DATA points
DATA = Path(
    os.environ.get("PRODMATCH_DEV_DATA") or Path(__file__).resolve().parent.parent.parent / "shared" / "data"
)

# name -> (folder, {split: file}, format)
DATASETS: dict[str, tuple[str, dict[str, str], str]] = {
    "walmart-amazon-structured": (
        "walmart-amazon/structured",
        {"train": "train.txt", "test": "test.txt"},
        "pairs",
    ),
    "walmart-amazon-dirty": ("walmart-amazon/dirty", {"train": "train.txt", "test": "test.txt"}, "pairs"),
    "wdc-computers": ("wdc-computers", {"train": "train.txt.medium", "test": "test.txt"}, "pairs"),
    "wdc-products-80cc": (
        "wdc-products-80cc",
        {
            "train": "wdcproducts80cc20rnd000un_train_medium.json.gz",
            "test": "wdcproducts80cc20rnd000un_valid_large.json.gz",
        },
        "wdc-products",
    ),
    "ember-ali-shoes": ("ember-ali-shoes", {"train": "train.parquet", "test": "val.parquet"}, "ember"),
}
SPLIT_WHEN_OVERLAP = 0.05  # share of the smaller side's offers that are also on the other side
FIELDS = ("id", "title", "brand", "category", "description", "price", "currency", "attributes")
_ATTRIBUTE = re.compile(r"COL (\S+) VAL ?(.*?)(?= COL \S+ VAL|$)", re.S)


@dataclass(frozen=True)
class Case:
    """One linking case in memory: products as dicts with FIELDS, gold as (source id, target id) pairs."""

    name: str
    split: str
    source_products: list[dict]
    target_products: list[dict]
    gold: frozenset[tuple[str, str]]
    pool_split: bool  # whether the offers were split by hash rather than by side
    # the file's label-0 pairs between A and B (not in gold): sources known to have no twin among them
    non_matches: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class CasePaths:
    """Where build_case wrote a case, and the catalogue names its gold file uses."""

    name: str
    split: str
    source_path: Path
    target_path: Path
    gold_path: Path
    source_catalog: str
    target_catalog: str
    n_source: int
    n_target: int
    n_gold: int


def load_case(name: str, split: str, data_dir: Path = DATA) -> Case:
    """The case `name` ("walmart-amazon-structured", ...) for split "train" or "test"."""
    folder, files, form = DATASETS[name]
    path = Path(data_dir) / folder / files[split]
    offers, pairs = _READERS[form](path)
    left = {a for a, _, _ in pairs}
    right = {b for _, b, _ in pairs}
    overlap = len(left & right) / min(len(left), len(right))
    clusters = _clusters(offers, pairs)
    if overlap > SPLIT_WHEN_OVERLAP:
        keys = sorted(left | right)
        in_a = {k for k in keys if hashlib.sha1(k.encode()).digest()[0] % 2 == 0}
        side_a, side_b = in_a, set(keys) - in_a
    else:
        side_a, side_b = left, right
    members = defaultdict(list)
    for key in side_b:
        members[clusters[key]].append(key)
    gold = frozenset((offers[a]["id"], offers[b]["id"]) for a in side_a for b in members.get(clusters[a], ()))
    crossing = {(a, b) for a, b, label in pairs if not label} | {(b, a) for a, b, label in pairs if not label}
    non_matches = (
        frozenset((offers[a]["id"], offers[b]["id"]) for a, b in crossing if a in side_a and b in side_b)
        - gold
    )
    return Case(
        name,
        split,
        [offers[k] for k in sorted(side_a)],
        [offers[k] for k in sorted(side_b)],
        gold,
        overlap > SPLIT_WHEN_OVERLAP,
        non_matches,
    )


def build_case(
    name: str, split: str, out_dir: Path, data_dir: Path = DATA, *, non_matches: bool = False
) -> CasePaths:
    """Writes the case's two catalogue files (JSONL) and its gold file (CSV) under out_dir; with `non_matches`,
    the gold file also lists the file's label-0 pairs between A and B (label 0), so a source with no twin is a
    labelled source: training and `eval` then see it as a user's review labels would show it."""
    case = load_case(name, split, data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_catalog, target_catalog = f"{name}-{split}-a", f"{name}-{split}-b"
    paths = {c: out_dir / f"{c}.jsonl" for c in (source_catalog, target_catalog)}
    for catalog, products in ((source_catalog, case.source_products), (target_catalog, case.target_products)):
        with open(paths[catalog], "w", encoding="utf-8") as f:
            for product in products:
                f.write(json.dumps({k: product[k] for k in FIELDS}, ensure_ascii=False) + "\n")
    gold_path = out_dir / f"{name}-{split}-gold.csv"
    with open(gold_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source_catalog", "source_id", "target_catalog", "target_id", "label"])
        for source_id, target_id in sorted(case.gold):
            writer.writerow([source_catalog, source_id, target_catalog, target_id, 1])
        for source_id, target_id in sorted(case.non_matches if non_matches else ()):
            writer.writerow([source_catalog, source_id, target_catalog, target_id, 0])
    return CasePaths(
        name,
        split,
        paths[source_catalog],
        paths[target_catalog],
        gold_path,
        source_catalog,
        target_catalog,
        len(case.source_products),
        len(case.target_products),
        len(case.gold),
    )


def _read_text_pairs(path: Path) -> tuple[dict[str, dict], list[tuple[str, str, int]]]:
    """DeepMatcher/Ditto lines `COL attr VAL value ... <TAB> ... <TAB> label`; the record text is its key."""
    offers: dict[str, dict] = {}
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            left, right, label = (p.strip() for p in parts)
            for record in (left, right):
                if record not in offers:
                    offers[record] = _text_record(record)
            pairs.append((left, right, int(label)))
    return offers, pairs


def _text_record(record: str) -> dict:
    values = {k: v.strip() for k, v in _ATTRIBUTE.findall(record)}
    price = values.pop("price", "")
    try:
        amount = float(price) if price else None
    except ValueError:
        amount = None
    product = {
        "id": "o" + hashlib.sha1(record.encode()).hexdigest()[:12],
        "title": values.pop("title", "") or record[:200],
        "brand": values.pop("brand", "") or None,
        "category": values.pop("category", "") or None,
        "description": values.pop("description", "") or None,
        "price": amount if amount and amount > 0 else None,
        "currency": None,
        "attributes": {k: v for k, v in values.items() if v},
    }
    return product


def _read_wdc_products(path: Path) -> tuple[dict[str, dict], list[tuple[str, str, int]]]:
    """WDC Products JSON lines; offers are keyed by their offer id and carry their cluster id."""
    offers: dict[str, dict] = {}
    pairs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for side in ("left", "right"):
                key = str(row[f"id_{side}"])
                if key not in offers:
                    try:
                        price = float(row[f"price_{side}"]) if row[f"price_{side}"] else None
                    except ValueError:
                        price = None
                    offers[key] = {
                        "id": key,
                        "title": row[f"title_{side}"] or "",
                        "brand": row[f"brand_{side}"],
                        "category": None,
                        "description": row[f"description_{side}"],
                        "price": price if price and price > 0 else None,
                        "currency": row[f"priceCurrency_{side}"],
                        "attributes": {},
                        "_cluster": row[f"cluster_id_{side}"],
                    }
            pairs.append((str(row["id_left"]), str(row["id_right"]), int(row["label"])))
    return offers, pairs


def _read_ember(path: Path) -> tuple[dict[str, dict], list[tuple[str, str, int]]]:
    """EMBer (Alibaba / Taobao) pairs in parquet: offers keyed by their item id, carrying their cluster id.

    Attributes come from ``pv_pairs`` (``key#:#value#;#key#:#value``); the picture URL stays an attribute
    (``image_url``), not the product's image, as these are remote marketplace pictures the benchmark does not
    ship. The brand is left empty: it is the ``品牌`` attribute, which ingest may promote.
    """
    import pyarrow.parquet as pq  # a development dependency, needed only for these files

    offers: dict[str, dict] = {}
    pairs = []
    for row in pq.read_table(path).to_pylist():
        for side in ("left", "right"):
            key = str(row[f"id_{side}"])
            if key not in offers:
                offers[key] = _ember_offer(key, row, side, path)
        pairs.append((str(row["id_left"]), str(row["id_right"]), int(row["label"])))
    return offers, pairs


def _ember_offer(key: str, row: dict, side: str, path: Path) -> dict:
    attributes = {}
    for item in (row[f"pv_pairs_{side}"] or "").split("#;#"):
        name, separator, value = item.partition("#:#")
        if not item.strip():
            continue
        if not separator:
            raise ValueError(
                f"{path}: offer {key}: pv_pairs item {item!r} has no '#:#' between key and value"
            )
        if name.strip() and value.strip():
            attributes[name.strip()] = value.strip()
    if row[f"pict_url_{side}"]:
        attributes["image_url"] = row[f"pict_url_{side}"]
    category = " / ".join(c for c in (row[f"cate_level_name_{side}"], row[f"cate_name_{side}"]) if c)
    return {
        "id": key,
        "title": row[f"title_{side}"] or "",
        "brand": None,
        "category": category or None,
        "description": None,
        "price": None,
        "currency": None,
        "attributes": attributes,
        "_cluster": row[f"cluster_id_{side}"],
    }


_READERS = {"pairs": _read_text_pairs, "wdc-products": _read_wdc_products, "ember": _read_ember}


def _clusters(offers: dict[str, dict], pairs: list[tuple[str, str, int]]) -> dict[str, object]:
    """Offer key -> product cluster: the file's cluster_id, else components of the label-1 pairs."""
    if all("_cluster" in o for o in offers.values()):
        return {k: o.pop("_cluster") for k, o in offers.items()}
    parent = {k: k for k in offers}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b, label in pairs:
        if label == 1:
            parent[find(a)] = find(b)
    return {k: find(k) for k in offers}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "quality-cases")
    for name in DATASETS:
        for split in ("train", "test"):
            paths = build_case(name, split, out / name / split)
            print(f"{name:28} {split:5} A={paths.n_source:5} B={paths.n_target:5} gold={paths.n_gold:5}")


if __name__ == "__main__":
    main()
