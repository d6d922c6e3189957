"""Match quality without a database: hybrid candidates, single signals and the learned matcher, per dataset.

    python benchmarks/quality_offline.py [--k 10] [--datasets NAME ...] [--seed 0]

A development harness for prodmatch.match.signals, prodmatch.match.scoring and prodmatch.quality.training,
run on the cases of benchmarks/quality_cases.py. Stand-ins replace the database-side parts: scikit-learn's
character n-gram TF-IDF over brand + title plays the lexical space, word TF-IDF over title + brand +
description a text space, and a small regex extractor the product codes. For each dataset it

1. gathers candidates for every source product of the case: top-k of each space plus exact code hits, and
   reports the recall of each candidate source and of their union on the gold pairs;
2. trains the matcher on the train case's candidates of gold sources: a candidate that is not a gold target
   counts as a non-match, because the gold file lists every true target of the sources it names;
3. on the test case, reports end-to-end precision/recall/F1 (recall over all gold pairs, so candidates missed
   count against it) for each single signal, with its threshold chosen on the train case, and for the
   matcher, with the threshold it picked on its training folds; each as "all" (every pair over the
   threshold), "top1" (a source's best pair only, today's cosine link) and "1:1" (greedy one-to-one).

Only sources with at least one gold target are linked, as the gold files say nothing about the others.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_cases import DATASETS, Case, load_case  # noqa: E402

from prodmatch.match.scoring import ThresholdScorer  # noqa: E402
from prodmatch.match.signals.features import FeatureMatrix, pair_features, with_context  # noqa: E402
from prodmatch.match.signals.ranks import rank_signals  # noqa: E402
from prodmatch.quality import matchers as matcher_quality  # noqa: E402
from prodmatch.quality.training import train_matcher  # noqa: E402

MAX_CODE_FREQUENCY = 20  # a "code" many products share is a word, not an identifier
# Single signals compared with the matcher; for those marked -1 a lower value means "more alike".
SINGLE_SIGNALS = {
    "sim:lexical": 1,
    "sim:words": 1,
    "title_jaccard": 1,
    "model_token_containment": 1,
    "codes_agree": 1,
}


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs of one case with their features and, per candidate source, which pairs it proposed."""

    source_ids: np.ndarray
    target_ids: np.ndarray
    features: FeatureMatrix
    labels: np.ndarray
    by_source: dict[str, set[tuple[str, str]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=["gbdt", "logistic"], help="model kinds that compete")
    parser.add_argument(
        "--real-embed",
        action="store_true",
        help="use prodmatch.embed.lexical and prodmatch.embed.codes instead of the stand-ins",
    )
    args = parser.parse_args()
    embed = RealEmbed() if args.real_embed else StandIns()
    summary = [run_dataset(name, args.k, args.seed, args.kinds, embed) for name in args.datasets]
    print(
        f"\n{'dataset':27} {'union recall':>12} {'best single signal':>32} {'matcher all/top1/1:1':>22} {'gain':>6}"
    )
    for row in summary:
        print(
            f"{row['dataset']:27} {row['union_recall']:12.3f} {row['best_single_name']:>26} {row['best_single']:.3f} "
            f"{'/'.join(f'{f:.3f}' for f in row['matcher_f1']):>22} {row['matcher'] - row['best_single']:+6.3f}"
        )


class StandIns:
    """scikit-learn TF-IDF as the lexical space and a regex as the code extractor."""

    compare_codes = None
    normalize_brand = None

    def codes(self, product: dict) -> list[str]:
        return stand_in_codes(product)

    def lexical(self, sources: list[dict], targets: list[dict]):
        return _tfidf(sources, targets, _lexical_text, analyzer="char_wb", ngram_range=(3, 5))


class RealEmbed:
    """prodmatch's own lexical space (hashed n-grams, IDF over both catalogues) and code extractor."""

    def __init__(self) -> None:
        from prodmatch.embed import codes, lexical

        self._codes, self._lexical = codes, lexical
        self.compare_codes = codes.compare_codes
        self.normalize_brand = lambda text: lexical.normalize(text).replace(" ", "")

    def codes(self, product: dict) -> list[str]:
        return self._codes.extract_codes(product)

    def lexical(self, sources: list[dict], targets: list[dict]):
        from scipy.sparse import csr_matrix

        lexical = self._lexical
        encoder = lexical.LexicalEncoder()
        raw = encoder.encode_many([*sources, *targets])
        idf = lexical.idf_weights(lexical.document_frequencies(raw), len(raw))
        rows = [lexical.weigh(vector, idf) for vector in raw]
        indptr = np.cumsum([0] + [len(i) for i, _ in rows])
        matrix = csr_matrix(
            (np.concatenate([v for _, v in rows]), np.concatenate([i for i, _ in rows]), indptr),
            shape=(len(rows), encoder.dimensions),
        )
        return matrix[: len(sources)], matrix[len(sources) :]


def run_dataset(name: str, k: int, seed: int, kinds: list[str], embed: StandIns | RealEmbed) -> dict:
    started = time.perf_counter()
    train_case, test_case = load_case(name, "train"), load_case(name, "test")
    train = gather(train_case, k, embed)
    t_candidates = time.perf_counter() - started
    test = gather(test_case, k, embed)
    print(
        f"\n== {name}: train A={len(train_case.source_products)} B={len(train_case.target_products)} "
        f"gold={len(train_case.gold)}; test A={len(test_case.source_products)} "
        f"B={len(test_case.target_products)} gold={len(test_case.gold)}"
    )
    for label, case, cands in (("train", train_case, train), ("test", test_case, test)):
        recalls = "  ".join(
            f"{source}={len(pairs & case.gold) / len(case.gold):.3f}"
            for source, pairs in cands.by_source.items()
        )
        union = len(set(zip(cands.source_ids, cands.target_ids, strict=True)) & case.gold) / len(case.gold)
        print(f"candidate recall ({label}, k={k}): {recalls}  union={union:.3f}  pairs={len(cands.labels)}")
    t0 = time.perf_counter()
    matcher = train_matcher(train.features, train.labels, train.source_ids, seed=seed, name=name, kinds=kinds)
    t_train = time.perf_counter() - t0
    m = matcher.metrics
    print(
        f"matcher: {m['kind']} on {m['n_pairs']} pairs ({m['n_positives']} positive), folds={m['folds']}, "
        f"OOF P/R/F1 {m['out_of_fold_precision']:.3f}/{m['out_of_fold_recall']:.3f}/{m['out_of_fold_f1']:.3f} "
        f"AUC {m['out_of_fold_auc']:.3f}, log-loss {m['out_of_fold_log_loss']}, threshold {matcher.threshold:.3f}, "
        f"trained in {t_train:.1f}s {'; '.join(m['notes'])}"
    )
    rows = []
    for feature, sign in SINGLE_SIGNALS.items():
        scorer_train = sign * _signal(train.features, feature)
        scorer_test = sign * _signal(test.features, feature)
        row = [feature]
        for mode in ("all", "top1", "1:1"):
            threshold = best_threshold(train, scorer_train, train_case.gold, mode)
            row.append(end_to_end(test, scorer_test, threshold, test_case.gold, mode))
        rows.append(row)
    t0 = time.perf_counter()
    probability = matcher.predict_proba(test.features)
    t_score = time.perf_counter() - t0
    rows.append(
        ["matcher"]
        + [
            end_to_end(test, probability, matcher.threshold, test_case.gold, mode)
            for mode in ("all", "top1", "1:1")
        ]
    )
    print(f"{'test, end to end':26} {'all P/R/F1':>20} {'top1 P/R/F1':>20} {'1:1 P/R/F1':>20}")
    for row in rows:
        print(f"{row[0]:26} " + " ".join(f"{p:6.3f}/{r:.3f}/{f:.3f}" for p, r, f in row[1:]))
    best_single, best_single_name = max(
        (f, f"{row[0]} {mode}")
        for row in rows[:-1]
        for mode, (_, _, f) in zip(("all", "top1", "1:1"), row[1:], strict=True)
    )
    best_matcher = max(f for _, _, f in rows[-1][1:])
    print(
        f"best single F1 {best_single:.3f}; matcher F1 {best_matcher:.3f} "
        f"({best_matcher - best_single:+.3f}); candidates {t_candidates:.1f}s, scoring {t_score * 1000:.0f} ms"
    )
    return {
        "dataset": name,
        "union_recall": union,  # of the test case, the last one printed
        "best_single": best_single,
        "best_single_name": best_single_name,
        "matcher": best_matcher,
        "matcher_f1": [f for _, _, f in rows[-1][1:]],
    }


def gather(case: Case, k: int, embed: StandIns | RealEmbed) -> Candidates:
    """Hybrid candidates of the case's gold sources with their features and labels."""
    gold_sources = {s for s, _ in case.gold}
    sources = [p for p in case.source_products if p["id"] in gold_sources]
    targets = case.target_products
    for product in (*sources, *targets):
        product["codes"] = embed.codes(product)
    spaces = {
        "lexical": embed.lexical(sources, targets),
        "words": _tfidf(sources, targets, _word_text, analyzer="word", ngram_range=(1, 2)),
    }
    by_source: dict[str, set[tuple[str, str]]] = {}
    proposals: dict[str, tuple[list, list, list]] = {}
    for space, (a, b) in spaces.items():
        sims = (a @ b.T).toarray()
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        rows = np.repeat(np.arange(len(sources)), top.shape[1])
        cols = top.ravel()
        proposals[space] = (
            [sources[i]["id"] for i in rows],
            [targets[j]["id"] for j in cols],
            sims[rows, cols],
        )
        by_source[space] = set(zip(proposals[space][0], proposals[space][1], strict=True))
    proposals["codes"] = _code_hits(sources, targets)
    by_source["codes"] = set(zip(proposals["codes"][0], proposals["codes"][1], strict=True))
    pairs = sorted(set().union(*by_source.values()))
    src = np.array([s for s, _ in pairs], dtype=object)
    tgt = np.array([t for _, t in pairs], dtype=object)
    source_index = {p["id"]: i for i, p in enumerate(sources)}
    target_index = {p["id"]: j for j, p in enumerate(targets)}
    si = np.array([source_index[s] for s in src])
    ti = np.array([target_index[t] for t in tgt])
    similarities = {
        space: np.asarray(a[si].multiply(b[ti]).sum(axis=1)).ravel() for space, (a, b) in spaces.items()
    }
    ranks = {
        name: rank_signals(*(np.asarray(c) for c in cols), pair_source_ids=src, pair_target_ids=tgt)
        for name, cols in proposals.items()
    }
    features = pair_features(
        [sources[i] for i in si],
        [targets[j] for j in ti],
        similarities=similarities,
        ranks=ranks,
        normalize_brand=embed.normalize_brand,
        compare_codes=embed.compare_codes,
    )
    features = with_context(features, src, tgt)
    labels = np.array([(s, t) in case.gold for s, t in pairs], dtype=np.int64)
    return Candidates(src, tgt, features, labels, by_source)


def stand_in_codes(product: dict) -> list[str]:
    """Codes as a simple regex sees them (the coordinator swaps in prodmatch.embed.codes.extract_codes)."""
    codes = []
    for value in product.get("attributes", {}).values():
        token = re.sub(r"[^0-9a-z]", "", str(value).casefold())
        if len(token) >= 4:
            codes.append(_gtin(token) or token)
    for chunk in re.findall(r"[^\s,;()\[\]|\"']+", (product.get("title") or "").casefold()):
        token = re.sub(r"[^0-9a-z]", "", chunk)
        if len(token) < 5 or _MEASURE.fullmatch(token):
            continue
        if token.isdigit():
            gtin = _gtin(token)
            codes.extend([gtin] if gtin else [])
        elif re.search(r"\d", token) and re.search(r"[a-z]", token):
            codes.append(token)
    return list(dict.fromkeys(codes))


_MEASURE = re.compile(r"\d+(?:gb|tb|mb|ghz|mhz|hz|w|mm|cm|in|mah|v|p|k|x|rpm|ms|lbs?|oz|ft)")


def _gtin(digits: str) -> str | None:
    if len(digits) not in (8, 12, 13, 14) or not digits.isdigit():
        return None
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    return "gtin:" + digits.zfill(14) if (10 - total % 10) % 10 == int(digits[-1]) else None


def _code_hits(sources: list[dict], targets: list[dict]) -> tuple[list, list, list]:
    index = defaultdict(list)
    for product in targets:
        for code in product["codes"]:
            index[code].append(product["id"])
    shared = defaultdict(int)
    for product in sources:
        for code in product["codes"]:
            hits = index.get(code, ())
            if len(hits) <= MAX_CODE_FREQUENCY:
                for target_id in hits:
                    shared[(product["id"], target_id)] += 1
    pairs = sorted(shared)
    return [s for s, _ in pairs], [t for _, t in pairs], [float(shared[p]) for p in pairs]


def _lexical_text(product: dict) -> str:
    return f"{product.get('brand') or ''} {product['title']}"


def _word_text(product: dict) -> str:
    return f"{product['title']} {product.get('brand') or ''} {(product.get('description') or '')[:500]}"


def _tfidf(sources: list[dict], targets: list[dict], text, **options):
    vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=True, dtype=np.float32, **options)
    vectorizer.fit([text(p) for p in (*sources, *targets)])
    return vectorizer.transform([text(p) for p in sources]), vectorizer.transform([text(p) for p in targets])


def _signal(features: FeatureMatrix, name: str) -> np.ndarray:
    values = features.column(name).astype(np.float64)
    return np.where(np.isnan(values), -np.inf, values)


def best_threshold(cands: Candidates, score: np.ndarray, gold: frozenset, mode: str) -> float:
    """The threshold with the best end-to-end F1 of `mode` on a (training) case (the library's sweep)."""
    return matcher_quality.best_threshold(
        cands.source_ids, cands.target_ids, cands.labels, score, len(gold), mode
    )


def end_to_end(cands: Candidates, score: np.ndarray, threshold: float, gold: frozenset, mode: str):
    kept = matcher_quality.decisions(cands.source_ids, cands.target_ids, score, mode)
    kept = kept[score[kept] >= threshold]
    tp = int(cands.labels[kept].sum())
    precision = tp / len(kept) if len(kept) else 0.0
    recall = tp / len(gold)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return precision, recall, f1


_ = ThresholdScorer  # the serving form of a single signal; the sweep above is its training

if __name__ == "__main__":
    main()
