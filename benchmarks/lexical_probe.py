"""Lexical retrieval quality on the development pair files: recall@k of the true match among top-k neighbours.

    python benchmarks/lexical_probe.py [--data ../shared/data]

For each pair file, the distinct left records form catalogue A and the distinct right records catalogue B; every
gold pair (label 1, or equal cluster_id for WDC Products) is looked up: is B's record among the top-k of A's by
cosine? IDF is computed over A and B together. Compared with scikit-learn's TfidfVectorizer(analyzer='char_wb',
ngram_range=(3, 5)) over brand + title, the few-lines baseline. Prints one line per file and method.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from prodmatch.embed.lexical import LexicalEncoder, document_frequencies, idf_weights, weigh_many

KS = (1, 5, 10)
_COL = re.compile(r"COL (\S+) VAL ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    cases = {
        "walmart-amazon/structured": read_pairs(args.data / "walmart-amazon/structured/test.txt"),
        "walmart-amazon/dirty": read_pairs(args.data / "walmart-amazon/dirty/test.txt"),
        "wdc-computers": read_pairs(args.data / "wdc-computers/test.txt"),
        "wdc-products-80cc": read_wdc_products(
            args.data / "wdc-products-80cc/wdcproducts80cc20rnd000un_valid_large.json.gz"
        ),
    }
    print(
        "recall@k: share of gold pairs found in the top k; hit@k: share of sources with a true target in the top k"
    )
    print(
        f"{'case':26s} {'method':10s} {'|A|':>5s} {'|B|':>5s} {'gold':>5s}  "
        "r@1    r@5    r@10   hit@1  hit@5  hit@10 seconds"
    )
    for name, (left, right, gold) in cases.items():
        for method, score in (("lexical", lexical_scores), ("tfidf-cwb", baseline_scores)):
            start = time.perf_counter()
            scores = score(left, right)
            seconds = time.perf_counter() - start
            recalls = recall_at(scores, gold)
            print(
                f"{name:26s} {method:10s} {len(left):5d} {len(right):5d} {len(gold):5d}  "
                + "  ".join(f"{recalls[k]:.3f}" for k in KS + tuple(-k for k in KS))
                + f"  {seconds:.2f}"
            )


def read_pairs(path: Path) -> tuple[list[dict], list[dict], list[tuple[int, int]]]:
    """Distinct left and right records of a DeepMatcher-format pair file and the gold (label 1) pairs."""
    left_ids: dict[str, int] = {}
    right_ids: dict[str, int] = {}
    gold = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        a = left_ids.setdefault(parts[0].strip(), len(left_ids))
        b = right_ids.setdefault(parts[1].strip(), len(right_ids))
        if parts[2].strip() == "1":
            gold.add((a, b))
    return [parse_record(r) for r in left_ids], [parse_record(r) for r in right_ids], sorted(gold)


def parse_record(text: str) -> dict:
    fields = _COL.split(text)[1:]
    record = {key: value.strip() for key, value in zip(fields[::2], fields[1::2], strict=True)}
    product = {k: record.get(k, "") for k in ("title", "brand", "category", "description")}
    if record.get("modelno"):
        product["attributes"] = {"modelno": record["modelno"]}
    return product


def read_wdc_products(path: Path) -> tuple[list[dict], list[dict], list[tuple[int, int]]]:
    left: dict[str, tuple[int, dict, object]] = {}
    right: dict[str, tuple[int, dict, object]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            for side, store in (("left", left), ("right", right)):
                key = str(row[f"id_{side}"])
                if key not in store:
                    product = {f: row.get(f"{f}_{side}") or "" for f in ("title", "brand", "description")}
                    store[key] = (len(store), product, row[f"cluster_id_{side}"])
    by_cluster: dict[object, list[int]] = {}
    for i, _, cluster in right.values():
        by_cluster.setdefault(cluster, []).append(i)
    gold = sorted({(i, j) for i, _, cluster in left.values() for j in by_cluster.get(cluster, [])})
    return [p for _, p, _ in left.values()], [p for _, p, _ in right.values()], gold


def lexical_scores(left: list[dict], right: list[dict]) -> np.ndarray:
    encoder = LexicalEncoder()
    raw_left, raw_right = encoder.encode_many(left), encoder.encode_many(right)
    idf = idf_weights(document_frequencies(raw_left + raw_right), len(left) + len(right))
    a = to_csr(weigh_many(raw_left, idf), encoder.dimensions)
    b = to_csr(weigh_many(raw_right, idf), encoder.dimensions)
    return (a @ b.T).toarray()


def baseline_scores(left: list[dict], right: list[dict]) -> np.ndarray:
    texts = [f"{p.get('brand', '')} {p.get('title', '')}" for p in left + right]
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform(texts)
    return (vectors[: len(left)] @ vectors[len(left) :].T).toarray()


def to_csr(vectors: list[tuple[np.ndarray, np.ndarray]], dimensions: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(i) for i, _ in vectors])
    indices = np.concatenate([i for i, _ in vectors]) if vectors else np.zeros(0, np.int32)
    values = np.concatenate([v for _, v in vectors]) if vectors else np.zeros(0, np.float32)
    return sp.csr_matrix((values, indices, indptr), shape=(len(vectors), dimensions))


def recall_at(scores: np.ndarray, gold: list[tuple[int, int]]) -> dict[int, float]:
    """Share of gold pairs (a, b) whose b is among a's top-k by score (ties broken by index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    rank[rows, order] = np.arange(scores.shape[1])[None, :]
    ranks = np.array([rank[a, b] for a, b in gold])
    best: dict[int, int] = {}
    for (a, _), r in zip(gold, ranks, strict=True):
        best[a] = min(best.get(a, r), r)
    best_ranks = np.array(list(best.values()))
    return {k: float(np.mean(ranks < k)) for k in KS} | {-k: float(np.mean(best_ranks < k)) for k in KS}


if __name__ == "__main__":
    main()
