"""Matching: similar products, text search, cross-catalogue links, duplicate clusters, index checks.

Everything an analyst can do in SQL goes through the functions of `sql/matching.sql` (`prodmatch.similar`,
`prodmatch.search`, `prodmatch.candidates`); this module calls them, stores runs in `prodmatch.match_runs` /
`prodmatch.matches` / `prodmatch.duplicate_clusters`, and adds what is better done outside the database: the exact
all-pairs search by blocked matrix multiplication (`exact.py`) for bulk linking and deduplication, one-to-one
assignment, clustering, and the recall check of the HNSW indexes. It reads vectors the worker wrote and knows
nothing of file formats.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from tqdm import tqdm

from prodmatch import store
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.errors import ConfigError, MemoryBudgetError
from prodmatch.hardware import MemoryBudget, format_bytes, memory_budget
from prodmatch.match.assign import cluster_duplicates, cluster_view, filter_and_rank, greedy_assignment
from prodmatch.match.candidates import ann_candidates, exact_candidates
from prodmatch.match.exact import top_k_cosine
from prodmatch.match.hybrid import DEFAULT_K, features, gather, lexical_candidates, lexical_similarities
from prodmatch.match.memory import (
    catalog_sizes,
    dedupe_peak_bytes,
    exact_link_peak_bytes,
    lexical_link_peak_bytes,
    matcher_link_peak_bytes,
    require_fits,
)
from prodmatch.match.pairs import CandidatePairs
from prodmatch.match.queries import DEFAULT_EF_SEARCH
from prodmatch.match.scoring import Matcher
from prodmatch.match.signals import attributes as attribute_signals
from prodmatch.match.signals.features import PRODUCT_FEATURES
from prodmatch.roles import product_roles
from prodmatch.store.catalogs import catalog_id
from prodmatch.store.matchers import BUILTIN_NAME, MatcherRow, builtin_available, get_matcher
from prodmatch.store.models import Model, get_model, space_dimension, vector_column
from prodmatch.store.runs import replace_run, store_pairs, write_matches
from prodmatch.store.vectors import fetch_vectors

MODES = ("exact", "ann")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkResult:
    """A stored link run."""

    run_id: int
    source: str
    target: str
    model: str | None
    mode: str
    params: dict
    sources: int
    pairs: int
    matched_sources: int  # sources with an accepted pair
    seconds: float
    out: str | None = None
    matcher: str | None = None
    accepted: int = 0
    memory_estimate: int = 0  # bytes the link was estimated to take at its peak (0: not estimated)
    notes: tuple[str, ...] = ()  # e.g. why the mode is not the one asked for

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        how = f"matcher {self.matcher}" if self.matcher else (self.model or "lexical space")
        return (
            f"run {self.run_id}: {self.source} -> {self.target} ({self.mode}, {how}): {self.pairs:,} pairs, "
            f"{self.accepted:,} accepted for {self.matched_sources:,} of {self.sources:,} products "
            f"in {self.seconds:.1f} s"
            + (f"; written to {self.out}" if self.out else "")
            + f"\n  SELECT * FROM prodmatch.matches_v WHERE run_id = {self.run_id} AND accepted ORDER BY rank;"
            + "".join(f"\n  note: {note}" for note in self.notes)
        )


@dataclass(frozen=True)
class DedupeResult:
    """A stored dedupe run."""

    run_id: int
    catalog: str
    model: str | None
    threshold: float
    products: int
    clusters: int
    duplicates: int  # products in clusters, centres included
    largest: int
    seconds: float
    method: str = "complete-linkage around the product with most near-duplicates"
    memory_estimate: int = 0  # bytes the search was estimated to take at its peak

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        return (
            f"run {self.run_id}: {self.clusters:,} clusters, {self.duplicates:,} of {self.products:,} "
            f"products (largest {self.largest}) in {self.seconds:.1f} s\n"
            f"  SELECT * FROM prodmatch.duplicates_v WHERE run_id = {self.run_id} ORDER BY cluster_id;"
        )


# --- link -------------------------------------------------------------------------------------------------


def link(
    conn: psycopg.Connection,
    source: str,
    target: str,
    *,
    k: int = 5,
    threshold: float | None = None,
    one_to_one: bool = False,
    mode: str | None = None,
    space: str | None = None,
    model: str | None = None,
    matcher: str | None = None,
    ef_search: int | None = None,
    out: Path | None = None,
    progress: bool = False,
    memory_budget_bytes: int | None = None,
    clustered: bool = False,
) -> LinkResult:
    """Every product of `source` gets its best candidates in `target`, stored as one match run.

    With a `matcher`: hybrid candidates (every space, lexical, codes), each pair scored with a calibrated match
    probability; accepted pairs pass the matcher's threshold (and, with `one_to_one`, the assignment). With no
    `matcher`, `threshold`, `space` or `mode` at all: the built-in matcher (`prodmatch.quality.builtin`: trained on
    public data, no label and no neural model needed). Otherwise: the cosine of one space (the lexical space when
    no model is registered); accepted pairs are each source's rank 1 at or above the threshold. Without a
    threshold, the one `prodmatch eval --save` stored with the model for that space is used. Without a `mode`,
    exact search is used when its estimated peak memory fits `memory_budget_bytes` (default: measured,
    `hardware.memory_budget`), else ANN with a note.

    With `clustered` (a matcher's run, not `one_to_one`): of the pairs over the threshold, only those whose two
    products the clustering of offers keeps together are accepted (`assign.cluster_view`: the pairs
    `prodmatch.offers_of` gives after `clusters build`), so a lookalike accepted between two products' offers is
    dropped; for marketplaces, where a product has many offers. `link --watch` keeps the decision run-wide.
    """
    started = time.perf_counter()
    if k < 1:
        raise ConfigError("k must be at least 1")
    if clustered and one_to_one:
        raise ConfigError(
            "--clustered and --one-to-one are two ways to decide: one-to-one for catalogues that list a product"
            " once, clustered for marketplaces where a product has many offers; choose one"
        )
    source_id, target_id = catalog_id(conn, source), catalog_id(conn, target)
    refresh_lexical(conn, progress=progress)
    conn.commit()
    defaulted = matcher is None and threshold is None and space is None and mode is None
    if defaulted and builtin_available():
        matcher = BUILTIN_NAME
    fallback = None  # why a link that defaulted to the built-in matcher went on with a model's cosine
    if matcher is not None:
        budget = memory_budget(memory_budget_bytes)
        try:
            return _link_with_matcher(
                conn,
                source,
                target,
                source_id,
                target_id,
                matcher,
                model,
                k,
                one_to_one,
                out,
                progress,
                started,
                budget,
                clustered,
            )
        except MemoryBudgetError as error:
            # Asked for nothing in particular, a user gets a link rather than a refusal: the model's space
            # (which falls back to ANN by itself when even that does not fit), with the reason as a note.
            # --clustered asks for a matcher's decision: refused, as naming the matcher is.
            if not defaulted or clustered or not (model or _has_models(conn)):
                raise
            conn.rollback()
            fallback = f"{error}. Linked on the model's cosine instead (--matcher builtin insists)"
            log.warning("%s", fallback)
    if clustered:
        raise ConfigError(
            "--clustered decides among a matcher's pairs over its threshold: use it with --matcher, or with no"
            " --threshold, --space or --mode (the built-in matcher)"
        )
    registered = get_model(conn, model) if model or _has_models(conn) else None
    if registered is None:
        space = space or "lexical"
        if space != "lexical":
            raise ConfigError(f"no model is registered, so only the lexical space can link (not {space!r})")
    else:
        saved = registered.settings.get("space", "fused")
        if threshold is None and (space is None or space == saved):
            threshold = registered.settings.get("threshold")
        space = space or saved
    if space == "lexical":
        return _link_lexical(
            conn,
            source,
            target,
            source_id,
            target_id,
            registered,
            k,
            threshold,
            one_to_one,
            out,
            progress,
            started,
            memory_budget(memory_budget_bytes),
        )
    space_dimension(registered, space)
    store.analyze_if_stale(conn)
    counts = _embedded_counts(conn, registered, (source_id, target_id))
    conn.commit()
    estimate = exact_link_peak_bytes(counts[source_id], counts[target_id], registered, space, k)
    mode, note = choose_mode(estimate, memory_budget(memory_budget_bytes), mode)
    if note:
        log.warning("%s", note)
    params = {
        "k": k,
        "threshold": threshold,
        "one_to_one": one_to_one,
        "mode": mode,
        "space": space,
        "ef_search": (ef_search or DEFAULT_EF_SEARCH) if mode == "ann" else None,  # the value used
    }
    bar = tqdm(
        total=counts[source_id], unit="product", desc=f"link {source} -> {target}", disable=not progress
    )
    with bar:
        if mode == "exact":
            pairs = exact_candidates(conn, registered, space, source_id, target_id, k, bar.update)
        else:
            pairs = ann_candidates(
                conn, registered, space, source, target, k, params["ef_search"], bar.update
            )
    conn.commit()
    pairs.signals["lexical_similarity"] = lexical_similarities(conn, source_id, target_id, pairs)
    pairs = accept_cosine(pairs, threshold, one_to_one)
    result = _finish(
        conn,
        "link",
        source,
        target,
        source_id,
        target_id,
        registered,
        None,
        mode,
        params,
        pairs,
        counts[source_id],
        out,
        started,
    )
    return replace(result, memory_estimate=estimate, notes=tuple(n for n in (fallback, note) if n))


def _link_lexical(
    conn,
    source,
    target,
    source_id,
    target_id,
    registered,
    k,
    threshold,
    one_to_one,
    out,
    progress,
    started,
    budget,
) -> LinkResult:
    """Link on the lexical space alone (no model needed): exact top-k of the hashed n-gram vectors."""
    sizes = catalog_sizes(conn, (source_id, target_id))
    estimate = lexical_link_peak_bytes(sizes[source_id], sizes[target_id], k)
    require_fits(f"link {source} -> {target} on the lexical space", estimate, budget, _TOO_BIG)
    params = {"k": k, "threshold": threshold, "one_to_one": one_to_one, "mode": "exact", "space": "lexical"}
    pairs = lexical_candidates(conn, source_id, target_id, k)
    conn.commit()
    pairs = accept_cosine(pairs, threshold, one_to_one)
    sources = _catalog_size(conn, source_id)
    result = _finish(
        conn,
        "link",
        source,
        target,
        source_id,
        target_id,
        registered,
        None,
        "exact",
        params,
        pairs,
        sources,
        out,
        started,
    )
    return replace(result, memory_estimate=estimate)


# What to do when a lexical or matcher link (or a matcher dedupe) does not fit its memory budget (require_fits adds the setting).
_TOO_BIG = (
    "link the source catalogue in parts (smaller catalogues, e.g. one per category), or, with a model registered, "
    "use --space fused --mode ann (the HNSW index, which streams)"
)


def _link_with_matcher(
    conn,
    source,
    target,
    source_id,
    target_id,
    matcher_name,
    model,
    k,
    one_to_one,
    out,
    progress,
    started,
    budget,
    clustered=False,
) -> LinkResult:
    """Hybrid candidates scored by a learned matcher; see `link`.

    The built-in matcher reads no vector, but where a model is registered (or named) its spaces still propose
    candidates and their cosines are stored with each pair, for analysts and for `review`.
    """
    opened = open_matcher(conn, matcher_name)
    scorer, registered, row, gather_k = opened.scorer, opened.model, opened.row, opened.depth_for(k)
    if registered is None and matcher_name == BUILTIN_NAME and (model or _has_models(conn)):
        registered = get_model(conn, model)
    sizes = catalog_sizes(conn, (source_id, target_id))
    estimate = matcher_link_peak_bytes(sizes[source_id], sizes[target_id], registered, gather_k)
    require_fits(f"link {source} -> {target} with matcher {matcher_name}", estimate, budget, _TOO_BIG)
    bar = tqdm(total=None, unit="product", desc=f"link {source} -> {target}", disable=not progress)
    with bar:
        gathered = gather(conn, source_id, target_id, registered, k=gather_k, advance=bar.update)
    conn.commit()
    matrix = features(gathered)
    probability = scorer.predict_proba(matrix, allow_missing=True).astype(np.float32)
    pairs = gathered.pairs
    pairs.score = probability
    pairs.signals["match_probability"] = probability
    pairs.signals["feature_row"] = np.arange(len(pairs), dtype=np.int64)
    pairs = accept_scored(pairs, scorer.threshold, one_to_one, k, clustered, (source_id, target_id))
    # Only the pairs kept are stored: their signals' mappings are built for them alone.
    pairs.signals["product_signals"] = _product_signals(matrix, pairs.signals.pop("feature_row"))
    params = {
        "k": k,
        "one_to_one": one_to_one,
        "mode": "hybrid",
        "matcher": matcher_name,
        "threshold": scorer.threshold,
        **({"clustered": True} if clustered else {}),
    }
    sources = _catalog_size(conn, source_id)
    result = _finish(
        conn,
        "link",
        source,
        target,
        source_id,
        target_id,
        registered,
        row.id,
        "hybrid",
        params,
        pairs,
        sources,
        out,
        started,
        matcher=matcher_name,
    )
    note = code_clash_note(matrix, pairs, target) if matcher_name == BUILTIN_NAME else None
    return replace(result, memory_estimate=estimate, notes=(note,) if note else ())


# A share of best candidates with clashing codes from which the built-in matcher's run says that many sources
# may have no twin: on the development sets' sources with a twin it was 0.03-0.15, on all their labelled
# sources (21-54% with a twin, the rest with lookalikes) 0.21-0.35 (docs/benchmarks.md, session 10).
CLASH_SHARE_NOTE = 0.2
_MIN_BEST_WITH_CODES = 20  # fewer best candidates with codes on both sides tell nothing


def code_clash_note(matrix, stored: CandidatePairs, target: str) -> str | None:
    """A line for the user when many products' best candidates carry a product code that clashes with theirs.

    `matrix` holds the features of every candidate gathered, `stored` the run's pairs with their `accepted`
    flags. The built-in matcher learned where nearly every product has a twin, so where many have none it
    accepts their closest lookalikes; a clash of codes between a product and its best lexical candidate is the
    sign a run can see without a label. None when the share is low or too few best candidates carry codes.
    """
    if "rank:lexical" not in matrix.names or "codes_conflict" not in matrix.names:
        return None
    conflict = matrix.column("codes_conflict")
    best = (matrix.column("rank:lexical") == 1) & ~np.isnan(conflict)
    with_codes = int(best.sum())
    clashes = int((conflict[best] > 0).sum())
    if with_codes < _MIN_BEST_WITH_CODES or clashes < CLASH_SHARE_NOTE * with_codes:
        return None
    accepted_clashes = sum(
        1
        for signals, taken in zip(
            stored.signals["product_signals"], stored.signals["accepted"].tolist(), strict=True
        )
        if taken and signals.get("codes_conflict", 0) > 0
    )
    return (
        f"{clashes:,} of {with_codes:,} products' best candidates in {target} have a product code that clashes "
        f"with theirs ({clashes / with_codes:.0%}): many products here may have no twin there, and the built-in "
        f"matcher, trained where nearly every product has one, then accepts a lookalike ({accepted_clashes:,} "
        'accepted pairs have clashing codes). Label a few hundred pairs in `prodmatch review`, "different" ones '
        "included, and train a matcher on them alone: `prodmatch matcher train --labels --prior none` "
        "(docs/builtin_matcher.md); --one-to-one helps where a product has at most one twin."
    )


# --- acceptance (shared with `prodmatch.match.watch`, which repairs a stored run the same way) ----------------


def accept_cosine(pairs: CandidatePairs, threshold: float | None, one_to_one: bool) -> CandidatePairs:
    """A cosine run's stored pairs: over the threshold (one-to-one if asked), ranked; rank 1 is accepted."""
    pairs = filter_and_rank(pairs, threshold, one_to_one)
    pairs.signals["accepted"] = pairs.ranks == 1
    return pairs


def accept_scored(
    pairs: CandidatePairs,
    threshold: float,
    one_to_one: bool,
    k: int,
    clustered: bool = False,
    catalogs: tuple[int, int] = (0, 1),
) -> CandidatePairs:
    """A matcher run's stored pairs: accepted at the threshold (one-to-one if asked), the top k of each source.

    Without `one_to_one` EVERY pair at or above the threshold is accepted, however many a source or a target has
    (the many offers of one product); `k` limits only the rejected pairs kept for review, never the accepted.
    With `clustered`, only those of them whose two products the clustering of offers keeps together
    (`assign.cluster_view`; `catalogs`: the run's source and target catalogue ids).
    """
    accepted = pairs.score >= threshold
    if one_to_one:
        chosen = np.zeros(len(pairs), dtype=bool)
        candidates = np.flatnonzero(accepted)
        chosen[
            candidates[
                greedy_assignment(
                    pairs.sources[candidates], pairs.targets[candidates], pairs.score[candidates]
                )
            ]
        ] = True
        accepted = chosen
    elif clustered:
        accepted = cluster_view(pairs, pairs.score, accepted, *catalogs)[1]
    pairs.signals["accepted"] = accepted
    pairs = filter_and_rank(pairs, None, False)
    return pairs.take((pairs.ranks <= k) | pairs.signals["accepted"])


def _finish(
    conn,
    kind,
    source,
    target,
    source_id,
    target_id,
    registered,
    matcher_id,
    mode,
    params,
    pairs,
    sources,
    out,
    started,
    matcher=None,
) -> LinkResult:
    """Store the run in one short transaction (computing happened outside any transaction)."""
    with conn.transaction():
        run_id = replace_run(conn, kind, source_id, target_id, registered, params, matcher_id=matcher_id)
        store_pairs(conn, run_id, pairs)
    accepted = pairs.signals.get("accepted")
    result = LinkResult(
        run_id=run_id,
        source=source,
        target=target,
        model=registered.name if registered else None,
        mode=mode,
        params=params,
        sources=sources,
        pairs=len(pairs.sources),
        matched_sources=len(np.unique(pairs.sources[accepted])) if accepted is not None else 0,
        seconds=round(time.perf_counter() - started, 3),
        out=str(out) if out else None,
        matcher=matcher,
        accepted=int(accepted.sum()) if accepted is not None else 0,
    )
    if out is not None:
        write_matches(conn, run_id, out)
        conn.commit()
    return result


def load_matcher(conn: psycopg.Connection, name: str) -> tuple[Matcher, Model | None]:
    """Stored matcher `name` (checked JSON, no code run) and the model whose vectors it reads, if any."""
    loaded = open_matcher(conn, name)
    return loaded.scorer, loaded.model


@dataclass(frozen=True)
class OpenMatcher:
    """A stored matcher read once: its row, its scorer, the model whose vectors it reads (if any)."""

    row: MatcherRow
    scorer: Matcher
    model: Model | None

    @property
    def depth(self) -> int:
        """The candidate depth (k per candidate source) it was trained on, which linking must gather."""
        return int(self.row.trained_on.get("k") or DEFAULT_K)

    def depth_for(self, k: int) -> int:
        """The depth a link with `k` gathers: the trained depth, or `k` when deeper, so `--k 20` can accept up to
        20 offers of a product (each candidate source proposes at most this many targets per source)."""
        return max(self.depth, k)


def open_matcher(conn: psycopg.Connection, name: str) -> OpenMatcher:
    """Matcher `name` with what linking needs of it, from one read of its row."""
    row = get_matcher(conn, name)
    model = get_model(conn, row.model) if row.model else None
    return OpenMatcher(row, Matcher.from_json(row.definition), model)


def _catalog_size(conn: psycopg.Connection, catalog_id: int) -> int:
    """Products in a catalogue (a lexical or matcher run's source count), outside any open transaction."""
    found = conn.execute(
        "SELECT count(*) FROM prodmatch.products WHERE catalog_id = %s", (catalog_id,)
    ).fetchone()[0]
    conn.commit()
    return found


def _has_models(conn: psycopg.Connection) -> bool:
    found = conn.execute("SELECT EXISTS (SELECT 1 FROM prodmatch.models)").fetchone()[0]
    conn.commit()
    return found


def _product_signals(matrix, rows: np.ndarray) -> np.ndarray:
    """Per pair (`rows` of the matrix), the named product signals (codes, brand, price, ...) that are not
    missing, for `matches.signals`."""
    names = [n for n in PRODUCT_FEATURES if n in matrix.names]
    values = np.round(np.stack([matrix.column(n)[rows] for n in names], axis=1).astype(np.float64), 4)
    out = np.empty(len(values), dtype=object)
    out[:] = [{n: v for n, v in zip(names, row, strict=True) if v == v} for row in values.tolist()]
    return out


def choose_mode(estimate: int, budget: MemoryBudget, requested: str | None = None) -> tuple[str, str | None]:
    """(mode, note): exact when its estimated peak of `estimate` bytes fits the budget (faster and complete for
    bulk work), else ANN with a note saying why. An explicit `requested` exact that does not fit is refused:
    the kernel would kill it with no message."""
    if requested is not None and requested not in MODES:
        raise ConfigError(f"unknown mode {requested!r}; choose exact or ann")
    if requested == "ann":
        return "ann", None
    if requested == "exact":
        require_fits("--mode exact", estimate, budget, "use --mode ann (HNSW index), which streams")
        return "exact", None
    if estimate <= budget.bytes:
        return "exact", None
    return "ann", (
        f"exact search would need about {format_bytes(estimate)} of memory, more than the budget of "
        f"{budget.to_text()}; linked with --mode ann (HNSW index) instead"
    )


# --- dedupe -----------------------------------------------------------------------------------------------


def dedupe(
    conn: psycopg.Connection,
    catalog: str,
    threshold: float | None = None,
    *,
    model: str | None = None,
    space: str = "fused",
    k: int = 20,
    matcher: str | None = None,
    progress: bool = False,
    memory_budget_bytes: int | None = None,
) -> DedupeResult:
    """Group near-duplicate products of one catalogue into clusters, stored as a dedupe run.

    Method (no chaining): candidates are each product's k nearest neighbours (exact search) at or above the
    threshold. Products are taken in order of how many such neighbours they have; each unassigned one becomes a
    centre, and its neighbours join its cluster, most similar first, only if they pass the threshold against
    EVERY member already in the cluster (complete linkage). So A~B, B~C but A!~C never puts A and C together,
    and a cluster holds at most k + 1 products. Refused with a message when its estimated peak memory exceeds
    `memory_budget_bytes` (default: measured, `hardware.memory_budget`): dedupe has no ANN path.

    With a `matcher` (e.g. "builtin") the evidence is the one `link` uses: the catalogue's hybrid candidates
    against itself (a product never its own candidate), each pair's match probability, and the same complete
    linkage over pairs at or above `threshold` (default: the matcher's own). With neither a `threshold` nor a
    `matcher`: the built-in matcher, as in `link`.
    """
    started = time.perf_counter()
    if matcher is None and threshold is None and builtin_available():
        matcher = BUILTIN_NAME
    if matcher is not None:
        budget = memory_budget(memory_budget_bytes)
        return _dedupe_with_matcher(conn, catalog, matcher, threshold, k, progress, started, budget)
    if threshold is None:
        raise ConfigError("dedupe needs a cosine --threshold, or a --matcher (e.g. builtin)")
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be a cosine similarity between -1 and 1, got {threshold}")
    registered = get_model(conn, model)
    dedupe_catalog = catalog_id(conn, catalog)
    products = _embedded_counts(conn, registered, (dedupe_catalog,))[dedupe_catalog]
    conn.commit()
    estimate = dedupe_peak_bytes(products, registered, space, k)
    require_fits(
        f"dedupe of {catalog} ({products:,} products)",
        estimate,
        memory_budget(memory_budget_bytes),
        "dedupe a smaller catalogue or run it on a machine with more memory",
    )
    ids, vectors = fetch_vectors(conn, registered, space, dedupe_catalog)
    bar = tqdm(total=len(ids), unit="product", desc=f"dedupe {catalog}", disable=not progress)
    with bar:
        found = top_k_cosine(
            vectors, vectors, min(k, max(len(ids) - 1, 1)), exclude_self=True, progress=bar.update
        )
    clusters = cluster_duplicates(vectors, found.indices, found.similarities, threshold)
    params = {"threshold": threshold, "space": space, "k": k}
    with conn.transaction():
        run_id = replace_run(conn, "dedupe", dedupe_catalog, None, registered, params)
        with conn.cursor().copy(
            "COPY prodmatch.duplicate_clusters (run_id, cluster_id, product_id, is_centre, similarity)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int4", "int8", "bool", "float4"])
            for number, members in enumerate(clusters, start=1):
                centre = members[0]
                for member in members:
                    similarity = float(vectors[centre] @ vectors[member])
                    copy.write_row((run_id, number, int(ids[member]), member == centre, similarity))
    return DedupeResult(
        run_id=run_id,
        catalog=catalog,
        model=registered.name,
        threshold=threshold,
        products=len(ids),
        clusters=len(clusters),
        duplicates=sum(len(c) for c in clusters),
        largest=max((len(c) for c in clusters), default=0),
        seconds=round(time.perf_counter() - started, 3),
        memory_estimate=estimate,
    )


def _dedupe_with_matcher(
    conn: psycopg.Connection,
    catalog: str,
    matcher_name: str,
    threshold: float | None,
    k: int,
    progress: bool,
    started: float,
    budget: MemoryBudget,
) -> DedupeResult:
    """`dedupe` on a matcher's probabilities over the catalogue's hybrid candidates against itself."""
    opened = open_matcher(conn, matcher_name)
    if threshold is None:
        threshold = opened.scorer.threshold
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(
            f"--threshold must be a match probability between 0 and 1 with a matcher, got {threshold}"
        )
    dedupe_catalog = catalog_id(conn, catalog)
    refresh_lexical(conn, progress=progress)
    conn.commit()
    depth = min(k, opened.depth)
    size = catalog_sizes(conn, (dedupe_catalog,))[dedupe_catalog]
    estimate = matcher_link_peak_bytes(size, size, opened.model, depth + 1)
    require_fits(f"dedupe of {catalog} with matcher {matcher_name}", estimate, budget, _TOO_BIG)
    bar = tqdm(total=None, unit="product", desc=f"dedupe {catalog}", disable=not progress)
    with bar:
        # One more candidate per source: the product itself, dropped before ranks and margins are computed.
        gathered = gather(conn, dedupe_catalog, dedupe_catalog, opened.model, k=depth + 1, advance=bar.update)
    conn.commit()
    gathered = _without_self_pairs(gathered)
    matrix = features(gathered)
    probability = opened.scorer.predict_proba(matrix, allow_missing=True).astype(np.float64)
    pairs = gathered.pairs
    probability[_variants(matrix, pairs, gathered.products)] = 0.0
    clusters, ids = _complete_linkage(pairs.sources, pairs.targets, probability, threshold)
    best = {}
    for s, t, p in zip(pairs.sources.tolist(), pairs.targets.tolist(), probability.tolist(), strict=True):
        key = (s, t) if s < t else (t, s)
        best[key] = max(best.get(key, 0.0), p)
    params = {"threshold": threshold, "matcher": matcher_name, "k": depth, "space": "hybrid"}
    with conn.transaction():
        run_id = replace_run(
            conn, "dedupe", dedupe_catalog, None, opened.model, params, matcher_id=opened.row.id
        )
        with conn.cursor().copy(
            "COPY prodmatch.duplicate_clusters (run_id, cluster_id, product_id, is_centre, similarity)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int4", "int8", "bool", "float4"])
            for number, members in enumerate(clusters, start=1):
                centre = int(ids[members[0]])
                for member in members:
                    product = int(ids[member])
                    key = (centre, product) if centre < product else (product, centre)
                    copy.write_row((run_id, number, product, product == centre, best.get(key, 1.0)))
    products = _catalog_size(conn, dedupe_catalog)
    return DedupeResult(
        run_id=run_id,
        catalog=catalog,
        model=opened.model.name if opened.model else None,
        threshold=threshold,
        products=products,
        clusters=len(clusters),
        duplicates=sum(len(c) for c in clusters),
        largest=max((len(c) for c in clusters), default=0),
        seconds=round(time.perf_counter() - started, 3),
        method=f"complete-linkage over matcher {matcher_name!r}'s accepted pairs (hybrid candidates)",
        memory_estimate=estimate,
    )


def _complete_linkage(
    sources: np.ndarray, targets: np.ndarray, probability: np.ndarray, threshold: float
) -> tuple[list[list[int]], np.ndarray]:
    """Clusters (positions in the returned product ids, centre first) in which EVERY two members form an
    accepted pair; centres are taken by most accepted neighbours, as in `cluster_duplicates`, and neighbours join
    most probable first. Inside one catalogue a pair is usually scored both ways (each product a source): it is
    accepted only if every way it was scored passes the threshold, so one lenient direction does not chain
    variants of one model together."""
    lowest: dict[tuple[int, int], float] = {}
    for s, t, q in zip(sources.tolist(), targets.tolist(), probability.tolist(), strict=True):
        key = (s, t) if s < t else (t, s)
        lowest[key] = min(lowest.get(key, 1.0), q)
    kept = [(key, q) for key, q in lowest.items() if q >= threshold]
    ids = np.unique(np.array([i for key, _ in kept for i in key], dtype=np.int64))
    neighbours: list[dict[int, float]] = [{} for _ in range(len(ids))]
    for (s, t), q in kept:
        i, j = int(np.searchsorted(ids, s)), int(np.searchsorted(ids, t))
        neighbours[i][j] = neighbours[j][i] = q
    order = sorted(range(len(ids)), key=lambda i: (-len(neighbours[i]), i))
    assigned = np.zeros(len(ids), dtype=bool)
    clusters = []
    for centre in order:
        if assigned[centre]:
            continue
        members = [centre]
        for j, _ in sorted(neighbours[centre].items(), key=lambda item: (-item[1], item[0])):
            if not assigned[j] and all(j in neighbours[m] for m in members):
                members.append(j)
        if len(members) > 1:
            assigned[members] = True
            clusters.append(members)
    return clusters, ids


def _variants(matrix, pairs: CandidatePairs, products: dict[int, dict]) -> np.ndarray:
    """Pairs of one catalogue that are different products, not the same listing twice: a clash of codes,
    colours or measures, of a descriptive attribute both fill in (size M vs XL), of brands, or model numbers
    with none in common. A shop lists each variant as its own product and writes its own brand one way, so
    inside one catalogue such a clash is decisive where across shops (noisy attributes, brands written two
    ways) the matcher has to weigh it."""
    clash = np.zeros(len(pairs), dtype=bool)
    for name in ("codes_conflict", "colour_conflict", "numbers_conflict"):
        if name in matrix.names:
            clash |= np.nan_to_num(matrix.column(name), nan=0.0) >= 1.0
    for name in ("brand_equal", "plain_number_jaccard"):
        if name in matrix.names:
            clash |= np.nan_to_num(matrix.column(name), nan=1.0) <= 0.0
    described = {
        pid: attribute_signals.normalised(p.get("attributes"), product_roles(p))
        for pid, p in products.items()
    }
    for i, (s, t) in enumerate(zip(pairs.sources.tolist(), pairs.targets.tolist(), strict=True)):
        if not clash[i]:
            clash[i] = attribute_signals.conflict(described[s], described[t])
    return clash


def _without_self_pairs(gathered):
    """The gathered candidates of a catalogue against itself without (p, p) pairs, in pairs and proposals."""
    keep = gathered.pairs.sources != gathered.pairs.targets
    gathered.pairs = gathered.pairs.take(keep)
    gathered.proposals = {
        name: (s[s != t], t[s != t], score[s != t]) for name, (s, t, score) in gathered.proposals.items()
    }
    return gathered


def _embedded_counts(conn: psycopg.Connection, model: Model, catalog_ids: tuple[int, ...]) -> dict[int, int]:
    counts = dict.fromkeys(catalog_ids, 0)
    for catalog, n in conn.execute(
        sql.SQL(
            "SELECT p.catalog_id, count(*) FROM prodmatch.embeddings e"
            " JOIN prodmatch.products p ON p.id = e.product_id"
            " WHERE e.model_id = %s AND {} IS NOT NULL AND p.catalog_id = ANY(%s) GROUP BY 1"
        ).format(sql.Identifier("e", vector_column(model, "fused"))),
        (model.id, list(catalog_ids)),
    ):
        counts[catalog] = n
    return counts
