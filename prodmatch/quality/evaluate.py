"""Evaluation: how good are the matches, which space and fusion weight to use, which threshold to pick.

A gold file lists known pairs (`source_catalog,source_id,target_catalog,target_id[,label]`; label 1 = same
product, 0 = known non-match; no label column = all matches). For each space (image, text, fused) and a grid of
fusion weights, every gold source is searched exactly against its target catalogue with the stored vectors:

- retrieval: recall@1/5/10 and MRR of the true target among all products of the target catalogue;
- decisions: a source's best candidate is accepted when its similarity reaches the threshold, as
  `prodmatch link --threshold T` would accept it. Precision = accepted and correct / accepted; recall = accepted
  and correct / sources that have a true match. A source known only by label-0 pairs counts as a false positive
  when its best candidate is one of those known non-matches (otherwise nothing is known about it).

It recommends the space, weight and threshold with the best F1 (or the best recall at a precision the user asks
for), draws precision-recall curves and score histograms as PNG, and `save_recommendation` stores the choice
with the model so `link` uses it. Vectors come from the database (`db.fetch_vectors`); fused vectors for
other weights are recomputed from the stored image and text vectors with `fusion.fuse`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from prodmatch.embed.fusion import fuse
from prodmatch.errors import ConfigError, ProdmatchError
from prodmatch.quality.gold import GoldPair, read_gold
from prodmatch.quality.metrics import SpaceReport, _recall, best_f1, precision_recall_curve
from prodmatch.quality.plots import draw_plots
from prodmatch.store.models import Model, get_model, update_settings, vector_column
from prodmatch.store.vectors import fetch_vectors

WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))


@dataclass(frozen=True)
class EvalReport:
    """What `prodmatch eval` reports."""

    model: str
    gold: str
    pairs: int
    positives: int
    negatives: int
    sources: int
    unknown: list[str]
    spaces: list[SpaceReport]  # image, text, fused at the model's weight
    weight_grid: list[SpaceReport]  # fused at each weight of WEIGHT_GRID
    recommendation: dict
    plots: dict[str, str]
    seconds: float
    saved: bool = False

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "gold": self.gold,
            "pairs": self.pairs,
            "positives": self.positives,
            "negatives": self.negatives,
            "sources": self.sources,
            "unknown": self.unknown,
            "spaces": [s.summary() for s in self.spaces],
            "weight_grid": [s.summary() for s in self.weight_grid],
            "recommendation": self.recommendation,
            "plots": self.plots,
            "seconds": self.seconds,
            "saved": self.saved,
        }

    def to_text(self) -> str:
        """The table people read: one row per space (and the grid's best fusion weight when it differs)."""
        lines = [
            f"{self.model}: {self.pairs} gold pairs ({self.positives} matches, {self.negatives} non-matches) "
            f"for {self.sources} products",
            f"{'space':<22}{'recall@1':>9}{'@5':>7}{'@10':>7}{'MRR':>7}{'best F1':>9}{'threshold':>11}",
        ]
        rows = [(r, r.space if r.space != "fused" else f"fused w={r.image_weight:g}") for r in self.spaces]
        best_fused = max(self.weight_grid, key=lambda r: (r.best_f1, r.recall_at_1), default=None)
        current = next((r for r in self.spaces if r.space == "fused"), None)
        if best_fused and (current is None or best_fused.image_weight != current.image_weight):
            rows.append((best_fused, f"fused w={best_fused.image_weight:g} (grid)"))
        for r, name in rows:
            threshold = f"{r.best_threshold:.4f}" if r.best_threshold is not None else "-"
            lines.append(
                f"{name:<22}{r.recall_at_1:>9.3f}{r.recall_at_5:>7.3f}{r.recall_at_10:>7.3f}{r.mrr:>7.3f}"
                f"{r.best_f1:>9.3f}{threshold:>11}"
            )
        rec = self.recommendation
        if rec.get("threshold") is not None:
            weight = f" w={rec['image_weight']:g}" if rec["space"] == "fused" else ""
            lines.append(
                f"recommended: {rec['space']}{weight}, threshold {rec['threshold']:.4f} "
                f"(precision {rec['precision']:.3f}, recall {rec['recall']:.3f}, F1 {rec['f1']:.3f})"
                + ("; saved with the model" if self.saved else "; --save to store it for link")
            )
        else:
            lines.append(f"no recommendation: {rec.get('note', '')}")
        lines += [f"plot: {path}" for path in self.plots.values()]
        return "\n".join(lines)


def evaluate(
    conn: psycopg.Connection,
    gold_file: Path,
    *,
    model: str | None = None,
    source: str | None = None,
    target: str | None = None,
    min_precision: float | None = None,
    plots_dir: Path | None = None,
    weights: tuple[float, ...] = WEIGHT_GRID,
) -> EvalReport:
    """Evaluate a model's stored vectors against gold pairs; optionally draw plots."""
    started = time.perf_counter()
    registered = get_model(conn, model)
    pairs = read_gold(gold_file)
    if source or target:
        pairs = [
            p
            for p in pairs
            if (not source or p.source_catalog == source) and (not target or p.target_catalog == target)
        ]
        if not pairs:
            raise ConfigError(f"{gold_file}: no gold pairs between {source or '*'} and {target or '*'}")
    resolved, unknown = _resolve(conn, pairs, gold_file)
    if not any(p.label == 1 for p, _, _ in resolved):
        raise ProdmatchError(
            f"{gold_file}: none of the matching pairs refer to known products; see the unknown list"
        )
    vectors = _Vectors.load(conn, registered, {p.target_catalog for p, _, _ in resolved})
    cases = _Cases.build(resolved)
    spaces = [
        _score(cases, vectors, "image", None),
        _score(cases, vectors, "text", None),
        _score(cases, vectors, "fused", registered.image_weight, registered),
    ]
    grid = [_score(cases, vectors, "fused", w, registered) for w in weights]
    recommendation = _recommend(spaces[:2] + grid, min_precision)
    plots = {}
    if plots_dir is not None:
        plots = draw_plots(Path(plots_dir), spaces, grid, recommendation)
    return EvalReport(
        model=registered.name,
        gold=str(gold_file),
        pairs=len(resolved),
        positives=sum(1 for p, _, _ in resolved if p.label == 1),
        negatives=sum(1 for p, _, _ in resolved if p.label == 0),
        sources=len(cases.sources),
        unknown=unknown,
        spaces=spaces,
        weight_grid=grid,
        recommendation=recommendation,
        plots=plots,
        seconds=round(time.perf_counter() - started, 3),
    )


def save_recommendation(conn: psycopg.Connection, report: EvalReport) -> Model:
    """Store the recommended space, weight and threshold with the model; `link` then uses them.

    When the recommended fusion weight differs from the model's, the stored fused vectors are recomputed.
    """
    registered = get_model(conn, report.model)
    rec = report.recommendation
    if (
        rec["space"] == "fused"
        and rec["image_weight"] is not None
        and not math.isclose(rec["image_weight"], registered.image_weight)
    ):
        refuse(conn, registered, rec["image_weight"])
    return update_settings(
        conn,
        get_model(conn, report.model),
        {
            "threshold": rec["threshold"],
            "space": rec["space"],
            "evaluated": {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "gold": report.gold,
                "f1": rec["f1"],
                "precision": rec["precision"],
                "recall": rec["recall"],
            },
        },
    )


def refuse(conn: psycopg.Connection, model: Model, image_weight: float) -> int:
    """Recompute every fused vector of `model` with a new image weight (and store the weight)."""
    ids_i, image = fetch_vectors(conn, model, "image", None)
    ids_t, text = fetch_vectors(conn, model, "text", None)
    ids = np.union1d(ids_i, ids_t)
    image_rows = _aligned(ids, ids_i, image, model.dimension)
    text_rows = _aligned(ids, ids_t, text, model.dimension)
    fused = fuse(image_rows, text_rows, method=model.fusion, image_weight=image_weight)
    conn.execute("UPDATE prodmatch.models SET image_weight = %s WHERE id = %s", (image_weight, model.id))
    conn.execute("DROP TABLE IF EXISTS pg_temp.refused")
    conn.execute("CREATE TEMP TABLE refused (product_id bigint, fused_vector vector) ON COMMIT DROP")
    with conn.cursor().copy("COPY refused FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "vector"])
        for pid, vector in zip(ids.tolist(), fused, strict=True):
            if not np.isnan(vector).any():
                copy.write_row((pid, vector))
    return conn.execute(
        sql.SQL(
            "UPDATE prodmatch.embeddings e SET {column} = r.fused_vector::{kind} FROM refused r"
            " WHERE e.model_id = %s AND e.product_id = r.product_id"
        ).format(
            column=sql.Identifier(vector_column(model, "fused")),
            kind=sql.SQL("halfvec" if model.storage == "halfvec" else "vector"),
        ),
        (model.id,),
    ).rowcount


# --- internals --------------------------------------------------------------------------------------------


def _resolve(
    conn, pairs: list[GoldPair], gold_file: Path
) -> tuple[list[tuple[GoldPair, int, int]], list[str]]:
    """Product ids for each gold pair; references to unknown catalogues or products are listed."""
    keys = {(p.source_catalog, p.source_id) for p in pairs} | {(p.target_catalog, p.target_id) for p in pairs}
    found = {}
    rows = conn.execute(
        "SELECT c.name, p.external_id, p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " JOIN unnest(%s::text[], %s::text[]) AS k(catalog, external_id)"
        " ON k.catalog = c.name AND k.external_id = p.external_id",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    for catalog, external_id, pid in rows:
        found[(catalog, external_id)] = pid
    resolved, unknown = [], []
    for p in pairs:
        s, t = found.get((p.source_catalog, p.source_id)), found.get((p.target_catalog, p.target_id))
        if s is None or t is None:
            missing = [
                f"{c}:{x}"
                for c, x, pid in ((p.source_catalog, p.source_id, s), (p.target_catalog, p.target_id, t))
                if pid is None
            ]
            unknown.append(f"{gold_file}:{p.line}: unknown product {', '.join(missing)}")
        else:
            resolved.append((p, s, t))
    return resolved, unknown


@dataclass
class _Vectors:
    """Image and text vectors of the products involved, rows aligned by product id (NaN rows = missing)."""

    ids: np.ndarray
    image: np.ndarray
    text: np.ndarray
    catalog_rows: dict[str, np.ndarray]  # target catalogue -> row indices of its products

    @classmethod
    def load(cls, conn, model: Model, target_catalogs: set[str]) -> _Vectors:
        ids_i, image = fetch_vectors(conn, model, "image", None)
        ids_t, text = fetch_vectors(conn, model, "text", None)
        ids = np.union1d(ids_i, ids_t)
        catalog_rows = {}
        for catalog in target_catalogs:
            members = np.array(
                [
                    r[0]
                    for r in conn.execute(
                        "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                        " WHERE c.name = %s",
                        (catalog,),
                    )
                ],
                dtype=np.int64,
            )
            catalog_rows[catalog] = np.nonzero(np.isin(ids, members))[0]
        return cls(
            ids,
            _aligned(ids, ids_i, image, model.dimension),
            _aligned(ids, ids_t, text, model.dimension),
            catalog_rows,
        )

    def row(self, product_id: int) -> int | None:
        i = int(np.searchsorted(self.ids, product_id))
        return i if i < len(self.ids) and self.ids[i] == product_id else None

    def space(self, space: str, weight: float | None, model: Model | None) -> np.ndarray:
        if space == "image":
            return self.image
        if space == "text":
            return self.text
        return fuse(self.image, self.text, method=model.fusion, image_weight=weight)


@dataclass
class _Cases:
    """Per gold source: its true targets and known non-matches, grouped by target catalogue."""

    sources: dict[tuple[int, str], dict]  # (source product id, target catalogue) -> {"pos": set, "neg": set}

    @classmethod
    def build(cls, resolved: list[tuple[GoldPair, int, int]]) -> _Cases:
        sources: dict[tuple[int, str], dict] = {}
        for pair, s, t in resolved:
            entry = sources.setdefault((s, pair.target_catalog), {"pos": set(), "neg": set()})
            entry["pos" if pair.label == 1 else "neg"].add(t)
        return cls(sources)


def _score(
    cases: _Cases, vectors: _Vectors, space: str, weight: float | None, model: Model | None = None
) -> SpaceReport:
    matrix = vectors.space(space, weight, model)
    valid = ~np.isnan(matrix).any(axis=1)
    clean = np.where(valid[:, None], matrix, 0.0).astype(np.float32)
    ranks, decisions, match_scores, non_match_scores = [], [], [], []
    for (source_pid, catalog), entry in sorted(cases.sources.items()):
        rows = vectors.catalog_rows.get(catalog, np.array([], dtype=np.int64))
        rows = rows[valid[rows]]
        s = vectors.row(source_pid)
        if s is None or not valid[s] or len(rows) == 0:
            ranks.extend([math.inf] * len(entry["pos"]))
            if entry["pos"]:
                decisions.append((-math.inf, False, True))
            continue
        rows = rows[vectors.ids[rows] != source_pid]  # a product is never its own candidate
        sims = clean[rows] @ clean[s]
        candidate_ids = vectors.ids[rows]
        order = np.lexsort((candidate_ids, -sims))
        best_id, best_sim = int(candidate_ids[order[0]]), float(sims[order[0]])
        by_id = dict(zip(candidate_ids.tolist(), sims.tolist(), strict=True))
        for t in entry["pos"]:
            if t not in by_id:
                ranks.append(math.inf)
                continue
            true_sim = by_id[t]
            match_scores.append(true_sim)
            better = np.sum(sims > true_sim) + np.sum((sims == true_sim) & (candidate_ids < t))
            ranks.append(int(better) + 1)
        for t in entry["neg"]:
            if t in by_id:
                non_match_scores.append(by_id[t])
        wrong = [i for i in order[:5] if int(candidate_ids[i]) not in entry["pos"]]
        if wrong and int(candidate_ids[wrong[0]]) not in entry["neg"]:  # labelled ones are counted above
            non_match_scores.append(float(sims[wrong[0]]))
        if entry["pos"]:
            decisions.append((best_sim, best_id in entry["pos"], True))
        elif best_id in entry["neg"]:
            decisions.append((best_sim, False, False))
    ranks_arr = np.array(ranks, dtype=float)
    scores, correct, has_match = zip(*decisions, strict=True) if decisions else ((), (), ())
    points = precision_recall_curve(np.array(scores), np.array(correct), sum(has_match))
    curve = [point.rounded() for point in points]
    best = None if not points else best_f1(points).rounded()
    return SpaceReport(
        space=space,
        image_weight=weight,
        recall_at_1=_recall(ranks_arr, 1),
        recall_at_5=_recall(ranks_arr, 5),
        recall_at_10=_recall(ranks_arr, 10),
        mrr=round(float(np.mean(1.0 / ranks_arr)) if len(ranks_arr) else 0.0, 4),
        best_f1=best["f1"] if best else 0.0,
        best_threshold=best["threshold"] if best else None,
        precision_at_best=best["precision"] if best else 0.0,
        recall_at_best=best["recall"] if best else 0.0,
        curve=curve,
        match_scores=match_scores,
        non_match_scores=non_match_scores,
    )


def _recommend(candidates: list[SpaceReport], min_precision: float | None) -> dict:
    def pick(report: SpaceReport) -> tuple[float | None, float, float]:
        if min_precision is not None:
            return report.threshold_for_precision(min_precision)
        return report.best_threshold, report.precision_at_best, report.recall_at_best

    best, best_key, chosen = None, None, None
    for report in candidates:
        threshold, precision, recall = pick(report)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        key = (recall if min_precision is not None else f1, report.recall_at_1, -(report.image_weight or 0))
        if threshold is not None and (best_key is None or key > best_key):
            best, best_key, chosen = report, key, (threshold, precision, recall, f1)
    if best is None:
        return {
            "space": "fused",
            "image_weight": None,
            "threshold": None,
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "note": f"no threshold reaches precision {min_precision}"
            if min_precision
            else "no decisions to score",
        }
    threshold, precision, recall, f1 = chosen
    return {
        "space": best.space,
        "image_weight": best.image_weight,
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": round(f1, 4),
        "recall_at_1": best.recall_at_1,
        "min_precision": min_precision,
    }


def _aligned(ids: np.ndarray, part_ids: np.ndarray, part: np.ndarray, dim: int) -> np.ndarray:
    out = np.full((len(ids), dim), np.nan, dtype=np.float32)
    if len(part_ids):
        out[np.searchsorted(ids, part_ids)] = part
    return out
