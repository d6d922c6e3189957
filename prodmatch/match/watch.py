"""Keep a stored link run current while catalogues change: `prodmatch link ... --watch`.

`watch_link` follows one run of `prodmatch.match.link`. It wakes on NOTIFY prodmatch_pending (products inserted
or changed, `sql/pending.sql`) and prodmatch_changed (products inserted or deleted, vectors written by the worker,
`sql/changes.sql`), or after `poll_seconds` at the latest, brings the lexical space current (`refresh_lexical`),
and finds what changed since its checkpoint: products, lexical rows and (for model runs) embeddings written since
(each read through an index on its time column, so a pass costs what changed, not the catalogue's size), and
products that are gone.
It then recomputes only the affected source products: changed or new sources, and the sources for which a changed,
new or deleted target is, or could now become, a candidate. That reverse search is exact: the watcher keeps every
candidate pair of the run in memory with each source's k-th best score in every candidate source (lexical query
score, cosine of each space, shared product codes), so a changed target affects exactly the sources it reaches
at or above their k-th best. With a learned matcher, the sources that share a target with the recomputed pairs are
re-scored too (their features compare a pair with the target's other candidates). Acceptance is repaired over the
whole run (`link.accept_cosine` / `link.accept_scored`, one-to-one and `--clustered` included), and the rows of
every source whose stored pairs changed are replaced in one short transaction, so `prodmatch.matches_v` shows the
new matches.
When a clustering of offers was built (`prodmatch clusters build`), a pass that rewrote pairs builds it again
with the same choice of runs (`match.clusters.rebuild_clusters`), so `prodmatch.clusters_v` follows too and
clusters keep their ids; that costs one read of the accepted pairs of the clustered runs.

A re-run of the same `link` replaces the run (`store.runs.replace_run`); the watcher then follows the new run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

import numpy as np
import psycopg
import scipy.sparse as sp
from psycopg.types.json import Jsonb

from prodmatch import store
from prodmatch.config import Settings
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.errors import DatabaseError, DatabaseUnavailable, ProdmatchError
from prodmatch.hardware import memory_budget
from prodmatch.match.candidates import ann_candidates, exact_candidates
from prodmatch.match.clusters import rebuild_clusters
from prodmatch.match.hybrid import (
    DEFAULT_K,
    MAX_CODE_TARGETS,
    CatalogueStats,
    Gathered,
    TargetSide,
    _heaviest_terms,
    _lexical_matrix,
    _lexical_top_k,
    features,
    gather,
    lexical_similarities,
    read_catalogue_stats,
)
from prodmatch.match.hybrid import LEXICAL_QUERY_TERMS as _QUERY_TERMS
from prodmatch.match.link import _product_signals, accept_cosine, accept_scored, open_matcher
from prodmatch.match.memory import (
    catalog_sizes,
    exact_link_peak_bytes,
    lexical_link_peak_bytes,
    matcher_link_peak_bytes,
    require_fits,
    watch_peak_bytes,
)
from prodmatch.match.pairs import CandidatePairs
from prodmatch.match.scoring import Matcher
from prodmatch.store.models import SPACES, Model, get_model
from prodmatch.store.pooler import require_notifications
from prodmatch.store.runs import store_pairs
from prodmatch.store.vectors import fetch_spaces

log = logging.getLogger(__name__)

NOTIFY_CHANNELS = ("prodmatch_pending", "prodmatch_changed")
FULL_FRACTION = 0.2  # recompute the whole run when more than this share of its products changed at once


@dataclass(frozen=True)
class WatchPass:
    """What one wake-up did. Everything committed before `checkpoint` is reflected in the run's pairs."""

    run_id: int
    checkpoint: datetime
    changed_sources: int  # new or changed source products
    changed_targets: int  # new or changed target products
    deleted: int  # products of either catalogue that disappeared
    recomputed_sources: int  # sources whose candidates were recomputed
    rewritten_sources: int  # sources whose stored pairs were replaced
    full: bool  # the whole run was recomputed (first pass, IDF re-weighting, many changes)
    seconds: float
    clusters: int | None = None  # the clustering of offers was built again (its cluster count), or None
    accepted_changed: bool = True  # the run's accepted pairs changed (so the clusters must be built again)

    def to_dict(self) -> dict:
        return {**asdict(self), "checkpoint": self.checkpoint.isoformat()}

    def to_text(self) -> str:
        what = "whole run" if self.full else f"{self.recomputed_sources} sources recomputed"
        return (
            f"run {self.run_id}: {self.changed_sources} sources and {self.changed_targets} targets changed, "
            f"{self.deleted} deleted; {what}, {self.rewritten_sources} rewritten in {self.seconds:.2f} s"
            + (f"; clusters rebuilt ({self.clusters:,})" if self.clusters is not None else "")
        )


@dataclass
class WatchSummary:
    """What a watch did until it stopped."""

    run_id: int
    passes: int = 0
    rewritten_sources: int = 0
    reconnects: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        return (
            f"watched run {self.run_id}: {self.passes} passes, {self.rewritten_sources} sources rewritten, "
            f"{self.reconnects} reconnects in {self.seconds:.1f} s"
        )


def watch_link(
    settings: Settings,
    run_id: int,
    *,
    stop: threading.Event,
    poll_seconds: float = 1.0,
    on_pass: Callable[[WatchPass], None] | None = None,
    db_retries: int = 5,
) -> WatchSummary:
    """Keep link run `run_id` equal to a fresh link on the current data until `stop` is set.

    A watch is a service: a lost connection, a server that is down or one with no free connection slot is waited
    out (backoff up to 30 s, one line per try), however long it lasts; other database errors (a wrong address or
    password) end it after `db_retries` tries."""
    started = time.perf_counter()
    summary = WatchSummary(run_id)
    watcher: _Watcher | None = None
    failures = 0
    while not stop.is_set():
        try:
            with store.connection(settings) as conn, store.connection(settings, autocommit=True) as listener:
                if watcher is None:  # once: a transaction-mode pooler never delivers the NOTIFYs
                    require_notifications(listener, settings, "link --watch")
                for channel in NOTIFY_CHANNELS:
                    listener.execute(f"LISTEN {channel}")
                if watcher is None:
                    run = _load_run(conn, summary.run_id)
                    _require_memory(conn, run, settings.memory_budget)
                    watcher = _Watcher(run)
                while not stop.is_set():
                    done = watcher.step(conn)
                    if done.rewritten_sources and done.accepted_changed:
                        built = rebuild_clusters(conn)
                        done = replace(done, clusters=built.clusters if built else None)
                    failures = 0
                    summary.run_id = watcher.run.run_id
                    summary.passes += 1
                    summary.rewritten_sources += done.rewritten_sources
                    if on_pass is not None:
                        on_pass(done)
                    _wait(listener, stop, poll_seconds)
        except (psycopg.OperationalError, DatabaseError) as error:
            failures += 1
            transient = isinstance(error, (psycopg.OperationalError, DatabaseUnavailable))
            if failures > db_retries and not transient:
                raise DatabaseError(
                    f"lost the database connection and could not get it back: {error}"
                ) from error
            summary.reconnects += 1
            delay = min(30.0, 0.5 * 2 ** min(failures - 1, 16))
            reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            log.warning("database connection lost (%s); reconnecting in %.1f s", reason, delay)
            if watcher is not None:
                watcher.state = None  # what was in flight is unknown: start again from the stored data
            stop.wait(delay)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _require_memory(conn: psycopg.Connection, run: _Run, budget_bytes: int | None) -> None:
    """Refuse, before anything is read, a watch whose resident state and first pass would not fit in memory."""
    sizes = catalog_sizes(conn, (run.source_id, run.target_id))
    source, target = sizes[run.source_id], sizes[run.target_id]
    k = run.proposal_k
    if run.kind == "matcher":
        link_peak = matcher_link_peak_bytes(source, target, run.model, k)
    elif run.kind == "lexical":
        link_peak = lexical_link_peak_bytes(source, target, k)
    elif run.params.get("mode") == "exact":
        link_peak = exact_link_peak_bytes(source.products, target.products, run.model, run.params["space"], k)
    else:  # ANN: the HNSW index streams; the watch keeps the pairs and, for lexical similarity, the rows
        link_peak = lexical_link_peak_bytes(source, target, k)
    require_fits(
        f"link --watch of run {run.run_id} ({run.source} -> {run.target})",
        watch_peak_bytes(link_peak, source, target, run.model if run.kind == "matcher" else None, k),
        memory_budget(budget_bytes),
        "watch the source catalogue in parts (smaller catalogues), or run the watch where there is more memory",
    )


def _wait(listener: psycopg.Connection, stop: threading.Event, poll_seconds: float) -> None:
    """Until a NOTIFY arrives, the poll interval passes, or a stop is requested."""
    deadline = time.monotonic() + poll_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        for _ in listener.notifies(timeout=min(0.25, poll_seconds), stop_after=1):
            return


# --- the run and what the watcher remembers of it ---------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    run_id: int
    source_id: int
    target_id: int
    source: str
    target: str
    model_id: int | None
    params: dict
    model: Model | None
    scorer: Matcher | None
    gather_k: int

    @property
    def kind(self) -> str:
        if self.scorer is not None:
            return "matcher"
        return "lexical" if self.params.get("space") == "lexical" else "cosine"

    @property
    def proposal_k(self) -> int:
        return self.gather_k if self.scorer is not None else int(self.params["k"])

    def dense_spaces(self) -> tuple[str, ...]:
        if self.model is None or self.kind == "lexical":  # a lexical run reads no vectors, model or not
            return ()
        return SPACES if self.scorer is not None else (self.params["space"],)


@dataclass
class _State:
    candidates: CandidatePairs  # every candidate before acceptance, by (source, target); score decides
    final: CandidatePairs  # the stored pairs
    sources: set[int]
    targets: set[int]
    proposals: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    products: dict[int, dict] = field(default_factory=dict)
    source_lexical: tuple[np.ndarray, sp.csr_matrix] | None = None
    target_lexical: tuple[np.ndarray, sp.csr_matrix] | None = None
    lexical_kth: dict[int, float] = field(default_factory=dict)  # source -> k-th best lexical query score
    usable_codes: set[str] = field(default_factory=set)
    target_codes: dict[int, tuple[str, ...]] = field(
        default_factory=dict
    )  # targets with codes -> their codes
    code_counts: Counter = field(default_factory=Counter)  # code -> target products carrying it
    source_vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # reverse search
    target_vectors: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # matcher runs with a model
    # matcher runs: what pair signals read from the whole of both catalogues (price scales, brand aliases),
    # read by each whole-run computation and kept between
    stats: CatalogueStats | None = None
    seen: dict[int, datetime] = field(default_factory=dict)
    checkpoint: datetime | None = None


class _RunGone(Exception):
    """The watched run was deleted (or replaced by a re-run of the same link)."""


def _load_run(conn: psycopg.Connection, run_id: int) -> _Run:
    row = conn.execute(
        "SELECT r.kind, r.source_catalog_id, r.target_catalog_id, r.model_id, r.params, s.name, t.name"
        " FROM prodmatch.match_runs r JOIN prodmatch.catalogs s ON s.id = r.source_catalog_id"
        " JOIN prodmatch.catalogs t ON t.id = r.target_catalog_id WHERE r.id = %s",
        (run_id,),
    ).fetchone()
    if row is None or row[0] != "link":
        raise ProdmatchError(f"there is no link run {run_id}; see SELECT * FROM prodmatch.match_runs")
    kind, source_id, target_id, model_id, params, source, target = row
    model = None
    if model_id is not None:
        name = conn.execute("SELECT name FROM prodmatch.models WHERE id = %s", (model_id,)).fetchone()[0]
        model = get_model(conn, name)
    scorer, gather_k = None, DEFAULT_K
    if params.get("matcher"):
        opened = open_matcher(conn, params["matcher"])
        # A model-free matcher (the built-in one) may still gather with the run's model: keep what the run used.
        scorer, model = opened.scorer, opened.model or model
        gather_k = opened.depth_for(int(params["k"]))
    conn.commit()
    return _Run(run_id, source_id, target_id, source, target, model_id, params, model, scorer, gather_k)


# --- one wake-up -----------------------------------------------------------------------------------------


class _Watcher:
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.state: _State | None = None

    def step(self, conn: psycopg.Connection) -> WatchPass:
        try:
            return self._step(conn)
        except _RunGone:
            conn.rollback()
            self.run = _load_run(conn, _successor(conn, self.run))
            self.state = None
            return self._step(conn)

    def _step(self, conn: psycopg.Connection) -> WatchPass:
        started = time.perf_counter()
        run = self.run
        if not conn.execute("SELECT 1 FROM prodmatch.match_runs WHERE id = %s", (run.run_id,)).fetchone():
            raise _RunGone
        checkpoint = _checkpoint(conn)
        conn.commit()
        state = self.state
        # After the first pass only the products written since the checkpoint can have a stale lexical row.
        written = None if state is None else _written_since(conn, run, state.checkpoint)
        refreshed = refresh_lexical(conn, product_ids=written)
        conn.commit()
        if state is None:
            seen = _changed_since(conn, run, checkpoint)
            self.state = state = self._compute_all(conn)
            rewritten = self._write(conn, state.final, None)
            state.seen = {i: ts for i, (_, ts) in seen.items()}
            state.checkpoint = checkpoint
            return self._report(checkpoint, 0, 0, 0, len(state.sources), rewritten, True, started)
        counts = _counts(conn, run)
        changed = _changed_since(conn, run, state.checkpoint)
        fresh = {i: c for i, (c, ts) in changed.items() if state.seen.get(i) != ts}
        sources_now, targets_now = _current_ids(conn, run, state, changed, counts)
        conn.commit()
        deleted_sources, deleted_targets = state.sources - sources_now, state.targets - targets_now
        changed_sources = {i for i, c in fresh.items() if c == run.source_id and i in sources_now}
        changed_targets = {i for i, c in fresh.items() if c == run.target_id and i in targets_now}
        deleted = len(deleted_sources) + len(deleted_targets)
        many = len(fresh) + deleted > FULL_FRACTION * max(len(state.sources) + len(state.targets), 1)
        accepted_changed = True
        if refreshed.reweighed or many:
            self.state = state = self._compute_all(conn)
            rewritten = self._write(conn, state.final, None)
            recomputed, full = len(state.sources), True
        elif changed_sources or changed_targets or deleted:
            before = state.final
            affected = self._update(
                conn, state, changed_sources, changed_targets, deleted_sources, deleted_targets, targets_now
            )
            state.sources, state.targets = sources_now, targets_now
            rewritten = self._write(conn, state.final, affected)
            recomputed, full = len(affected), False
            # Most passes re-score sources without changing what they accept (a price, a title, a new product
            # that matches nothing): the clusters, built from accepted pairs only, then need no rebuild.
            accepted_changed = _accepted_pairs(before, affected) != _accepted_pairs(state.final, affected)
        else:
            rewritten = recomputed = 0
            full = False
        state.seen = {i: ts for i, (_, ts) in changed.items() if ts >= checkpoint}
        state.checkpoint = checkpoint
        done = self._report(
            checkpoint,
            len(changed_sources),
            len(changed_targets),
            deleted,
            recomputed,
            rewritten,
            full,
            started,
        )
        return replace(done, accepted_changed=accepted_changed)

    def _report(
        self, checkpoint, sources, targets, deleted, recomputed, rewritten, full, started
    ) -> WatchPass:
        return WatchPass(
            self.run.run_id,
            checkpoint,
            sources,
            targets,
            deleted,
            recomputed,
            rewritten,
            full,
            round(time.perf_counter() - started, 4),
        )

    # --- computing candidates -----------------------------------------------------------------------------

    def _compute_all(self, conn: psycopg.Connection) -> _State:
        """The whole run, as `link` computes it, keeping every candidate and the reverse-search thresholds."""
        run = self.run
        sources = _ids(conn, run.source_id)
        targets = _ids(conn, run.target_id)
        state = _State(CandidatePairs(*_empty_pairs()), CandidatePairs(*_empty_pairs()), sources, targets)
        if run.kind != "cosine":
            state.source_lexical = _lexical_matrix(conn, run.source_id, None)
            state.target_lexical = _lexical_matrix(conn, run.target_id, None)
        if run.kind == "matcher":
            state.target_codes = _target_codes(conn, run.target_id)
            state.code_counts = Counter(c for codes in state.target_codes.values() for c in codes)
            state.usable_codes = {c for c, n in state.code_counts.items() if n <= MAX_CODE_TARGETS}
            if run.model is not None:
                state.target_vectors = fetch_spaces(conn, run.model, run.target_id, "fused")
            state.stats = read_catalogue_stats(conn, {run.source_id, run.target_id})
        conn.commit()
        only = np.array(sorted(sources), dtype=np.int64)
        state.candidates = self._candidates(conn, state, only)
        if run.kind == "matcher":
            self._score(state, only)
        state.final = self._accept(state.candidates)
        return state

    def _candidates(self, conn: psycopg.Connection, state: _State, only: np.ndarray) -> CandidatePairs:
        """Candidate pairs of sources `only` with their signals and decision score (matcher: unscored)."""
        run = self.run
        if run.kind != "cosine":
            state.lexical_kth.update(_lexical_kth(state, only, run.proposal_k))
        if run.kind == "lexical":
            rows = _rows_of(state.source_lexical, only)
            s, t, score = _lexical_top_k(rows, state.target_lexical, run.proposal_k)
            pairs = CandidatePairs(s, t, score, {"lexical_similarity": score})
        elif run.kind == "cosine":
            space, k = run.params["space"], run.proposal_k
            if run.params["mode"] == "exact":
                pairs = exact_candidates(conn, run.model, space, run.source_id, run.target_id, k, _no, only)
            else:
                ef = run.params["ef_search"]
                pairs = ann_candidates(conn, run.model, space, run.source, run.target, k, ef, _no, only)
            pairs.signals["lexical_similarity"] = lexical_similarities(
                conn, run.source_id, run.target_id, pairs
            )
        else:
            gathered = gather(
                conn,
                run.source_id,
                run.target_id,
                run.model,
                k=run.gather_k,
                source_ids=only,
                target_side=TargetSide(state.target_lexical, state.target_vectors, state.stats),
            )
            pairs = gathered.pairs
            state.products.update(gathered.products)
            for name, (s, t, score) in gathered.proposals.items():
                old = state.proposals.get(name, _empty_pairs()[:3])
                keep = ~np.isin(old[0], only)
                merged = [np.concatenate([o[keep], n]) for o, n in zip(old, (s, t, score), strict=True)]
                order = np.argsort(
                    merged[0], kind="stable"
                )  # each source's own order, as a full gather has it
                state.proposals[name] = tuple(m[order] for m in merged)
            pairs.signals["match_probability"] = np.full(len(pairs), np.nan, dtype=np.float32)
            pairs.signals["product_signals"] = np.full(len(pairs), None, dtype=object)
        conn.commit()
        return _sorted(pairs)

    def _accept(self, candidates: CandidatePairs) -> CandidatePairs:
        run = self.run
        copy = candidates.take(np.arange(len(candidates)))
        if run.scorer is None:
            return accept_cosine(copy, run.params.get("threshold"), bool(run.params.get("one_to_one")))
        return accept_scored(
            copy,
            run.scorer.threshold,
            bool(run.params.get("one_to_one")),
            run.params["k"],
            bool(run.params.get("clustered")),
            (run.source_id, run.target_id),
        )

    def _score(self, state: _State, sources: np.ndarray) -> None:
        """Matcher probabilities of the pairs of `sources`, with the context of every competing pair."""
        pairs = state.candidates
        own = np.isin(pairs.sources, sources)
        rivals = np.unique(pairs.targets[own])
        mask = own | np.isin(pairs.targets, rivals)
        sub_pairs = pairs.take(mask)
        proposals = {}
        for name, (s, t, score) in state.proposals.items():
            keep = np.isin(s, sources) | np.isin(t, rivals)
            proposals[name] = (s[keep], t[keep], score[keep])
        matrix = features(Gathered(sub_pairs, proposals, state.products))
        probability = self.run.scorer.predict_proba(matrix, allow_missing=True).astype(np.float32)
        mine = np.isin(sub_pairs.sources, sources)
        at = np.flatnonzero(mask)[mine]
        pairs.score[at] = probability[mine]
        pairs.signals["match_probability"][at] = probability[mine]
        pairs.signals["product_signals"][at] = _product_signals(matrix, np.flatnonzero(mine))

    def _update(
        self,
        conn: psycopg.Connection,
        state: _State,
        changed_sources: set[int],
        changed_targets: set[int],
        deleted_sources: set[int],
        deleted_targets: set[int],
        targets_now: set[int],
    ) -> set[int]:
        """Recompute the affected sources' candidates and repair acceptance; the sources whose rows changed."""
        run = self.run
        if state.source_lexical is not None:
            state.source_lexical = _patch_lexical(
                conn, run.source_id, state.source_lexical, changed_sources | deleted_sources
            )
            state.target_lexical = _patch_lexical(
                conn, run.target_id, state.target_lexical, changed_targets | deleted_targets
            )
        self._patch_source_vectors(conn, state, changed_sources | deleted_sources)
        if state.target_vectors is not None:
            state.target_vectors = _patch_spaces(
                conn, run, run.target_id, state.target_vectors, changed_targets | deleted_targets
            )
        touched = changed_targets | deleted_targets
        affected = set(changed_sources)
        candidates = state.candidates
        affected |= set(candidates.sources[np.isin(candidates.targets, list(touched))].tolist())
        if changed_targets:
            affected |= self._reverse(conn, state, changed_targets)
        if run.kind == "matcher":
            flipped = _recount_codes(conn, state, changed_targets, deleted_targets)
            shared = {c for t in changed_targets for c in state.target_codes.get(t, ())}  # just re-read
            affected |= _sources_with_codes(conn, run, shared | flipped)
        affected -= deleted_sources
        affected &= state.sources | changed_sources
        conn.commit()
        gone = np.array(sorted(affected | deleted_sources), dtype=np.int64)
        dropped = np.isin(candidates.sources, gone)
        old_targets = candidates.targets[dropped]
        only = np.array(sorted(affected), dtype=np.int64)
        new = self._candidates(conn, state, only) if len(only) else None
        if run.kind == "matcher" and len(deleted_sources):
            for name, (s, t, score) in state.proposals.items():
                keep = ~np.isin(s, list(deleted_sources))
                state.proposals[name] = (s[keep], t[keep], score[keep])
        kept = candidates.take(~dropped)
        state.candidates = _sorted(_concat(kept, new)) if new is not None else kept
        rescored = set(affected)
        if run.kind == "matcher":
            rivals = np.union1d(old_targets, new.targets if new is not None else np.empty(0, np.int64))
            rescored |= set(state.candidates.sources[np.isin(state.candidates.targets, rivals)].tolist())
            if rescored:
                self._score(state, np.array(sorted(rescored), dtype=np.int64))
        # run-wide decisions: a change here can take or give back a pair of a source nobody touched
        run_wide = bool(run.params.get("one_to_one") or run.params.get("clustered"))
        before = _accepted(state.final) if run_wide else {}
        state.final = self._accept(state.candidates)
        rewrite = rescored | deleted_sources
        if run_wide:
            after = _accepted(state.final)
            rewrite |= {s for s in before.keys() | after.keys() if before.get(s) != after.get(s)}
        return rewrite

    def _reverse(self, conn: psycopg.Connection, state: _State, targets: set[int]) -> set[int]:
        """Sources that would take one of `targets` among their candidates now (at or above their k-th best)."""
        run = self.run
        found: set[int] = set()
        wanted = np.array(sorted(targets), dtype=np.int64)
        if state.source_lexical is not None and len(state.source_lexical[0]):
            source_ids, source_rows = state.source_lexical
            target_ids, target_rows = _rows_of(state.target_lexical, wanted)
            if len(target_ids):
                dots = (_heaviest_terms(source_rows, _QUERY_TERMS) @ target_rows.T).tocoo()
                kth = np.array([state.lexical_kth.get(int(s), -np.inf) for s in source_ids[dots.row]])
                reach = dots.data >= kth  # an entry reaches a source with fewer than k candidates
                found |= set(source_ids[dots.row[reach]].tolist())
        for space in run.dense_spaces():
            source_ids, source = self._source_vectors(conn, state, space)
            target_ids, target = fetch_spaces(
                conn, run.model, run.target_id, space, also=(), product_ids=wanted.tolist()
            )
            if not len(target_ids) or not len(source_ids):
                continue
            cosines = np.nan_to_num(source @ target[space].T, nan=-np.inf).max(axis=1)
            kth = _dense_kth(state, run, space, source_ids)
            found |= set(source_ids[cosines >= kth].tolist())
        conn.commit()
        return found

    def _source_vectors(
        self, conn: psycopg.Connection, state: _State, space: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every source's vector of `space`, read once and kept (a pass then reads only the changed targets')."""
        if space not in state.source_vectors:
            ids, vectors = fetch_spaces(conn, self.run.model, self.run.source_id, space, also=())
            state.source_vectors[space] = (ids, vectors[space])
        return state.source_vectors[space]

    def _patch_source_vectors(self, conn: psycopg.Connection, state: _State, changed: set[int]) -> None:
        """Re-read the cached vectors of changed sources (and forget deleted ones)."""
        if not changed:
            return
        for space, (ids, vectors) in list(state.source_vectors.items()):
            new_ids, new = fetch_spaces(
                conn, self.run.model, self.run.source_id, space, also=(), product_ids=sorted(changed)
            )
            keep, order, merged = _merge_by_id(ids, changed, new_ids)
            state.source_vectors[space] = (merged, np.concatenate([vectors[keep], new[space]])[order])

    # --- writing ------------------------------------------------------------------------------------------

    def _write(self, conn: psycopg.Connection, final: CandidatePairs, sources: set[int] | None) -> int:
        """Replace the stored pairs of `sources` (None: all) in one short transaction; how many sources."""
        run_id = self.run.run_id
        with conn.transaction():
            locked = conn.execute(
                "SELECT 1 FROM prodmatch.match_runs WHERE id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if locked is None:
                raise _RunGone
            if sources is None:
                conn.execute("DELETE FROM prodmatch.matches WHERE run_id = %s", (run_id,))
                store_pairs(conn, run_id, final)
                return len(np.unique(final.sources))
            ids = sorted(sources)
            conn.execute(
                "DELETE FROM prodmatch.matches WHERE run_id = %s AND source_product_id = ANY(%s)",
                (run_id, ids),
            )
            store_pairs(conn, run_id, final.take(np.isin(final.sources, ids)))
        return len(ids)


# --- helpers ----------------------------------------------------------------------------------------------


def _no(_: int) -> None:
    """No progress bar while watching."""


def _checkpoint(conn: psycopg.Connection) -> datetime:
    """A time before every write not yet visible: now, or the start of the oldest open transaction.

    `updated_at` columns hold their transaction's start time, so a transaction that commits after this scan
    still writes rows stamped at or after the checkpoint, and the next scan (from here) sees them.
    """
    return conn.execute(
        "SELECT least(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity"
        " WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        " AND datname = current_database()))"
    ).fetchone()[0]


def _changed_since(conn: psycopg.Connection, run: _Run, since: datetime) -> dict[int, tuple[int, datetime]]:
    """Products of either catalogue whose row, lexical row or (model runs) vectors were written since."""
    catalogs = [run.source_id, run.target_id]
    found: dict[int, tuple[int, datetime]] = {}
    queries = [
        (
            "SELECT p.id, p.catalog_id, p.updated_at FROM prodmatch.products p"
            " WHERE p.catalog_id = ANY(%s) AND p.updated_at >= %s",
            (catalogs, since),
        ),
        (
            "SELECT p.id, p.catalog_id, l.updated_at FROM prodmatch.lexical l"
            " JOIN prodmatch.products p ON p.id = l.product_id WHERE p.catalog_id = ANY(%s) AND l.updated_at >= %s",
            (catalogs, since),
        ),
    ]
    if run.model is not None:
        queries.append(
            (
                "SELECT p.id, p.catalog_id, e.embedded_at FROM prodmatch.embeddings e"
                " JOIN prodmatch.products p ON p.id = e.product_id"
                " WHERE e.model_id = %s AND p.catalog_id = ANY(%s) AND e.embedded_at >= %s",
                (run.model.id, catalogs, since),
            )
        )
    for query, params in queries:
        for product_id, catalog, stamp in conn.execute(query, params):
            if product_id not in found or found[product_id][1] < stamp:
                found[product_id] = (catalog, stamp)
    return found


def _written_since(conn: psycopg.Connection, run: _Run, since: datetime) -> list[int]:
    """Products of either catalogue whose row was written since `since` (read through products_updated_at_idx)."""
    rows = conn.execute(
        "SELECT id FROM prodmatch.products WHERE catalog_id = ANY(%s) AND updated_at >= %s",
        ([run.source_id, run.target_id], since),
    ).fetchall()
    return [r[0] for r in rows]


def _counts(conn: psycopg.Connection, run: _Run) -> dict[int, int]:
    rows = conn.execute(
        "SELECT catalog_id, count(*) FROM prodmatch.products WHERE catalog_id = ANY(%s) GROUP BY 1",
        ([run.source_id, run.target_id],),
    ).fetchall()
    return dict(rows)


def _current_ids(conn, run: _Run, state: _State, changed: dict, counts: dict[int, int]) -> tuple[set, set]:
    """The products of both catalogues now; read in full only when the counts say some disappeared.

    The counts are read before the changes, so a product inserted in between makes them disagree too (and the
    ids are read), never hides a deletion.
    """
    out = []
    for catalog, known in ((run.source_id, state.sources), (run.target_id, state.targets)):
        new = {i for i, (c, _) in changed.items() if c == catalog and i not in known}
        if counts.get(catalog, 0) == len(known) + len(new):
            out.append(known | new)
        else:
            out.append(_ids(conn, catalog))
    return out[0], out[1]


def _ids(conn: psycopg.Connection, catalog: int) -> set[int]:
    return {r[0] for r in conn.execute("SELECT id FROM prodmatch.products WHERE catalog_id = %s", (catalog,))}


def _successor(conn: psycopg.Connection, run: _Run) -> int:
    """The run that replaced `run` (a re-run of the same link), or an error when it was simply deleted."""
    row = conn.execute(
        "SELECT id FROM prodmatch.match_runs WHERE kind = 'link' AND source_catalog_id = %s"
        " AND target_catalog_id = %s AND model_id IS NOT DISTINCT FROM %s AND params = %s"
        " ORDER BY id DESC LIMIT 1",
        (run.source_id, run.target_id, run.model_id, Jsonb(run.params)),
    ).fetchone()
    conn.commit()
    if row is None:
        raise ProdmatchError(f"link run {run.run_id} was deleted; nothing left to watch")
    return row[0]


def _target_codes(conn: psycopg.Connection, target_id: int) -> dict[int, tuple[str, ...]]:
    """The codes of every target product that has some (read once; a pass then recounts only what changed)."""
    rows = conn.execute(
        "SELECT l.product_id, l.codes FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
        " WHERE p.catalog_id = %s AND cardinality(l.codes) > 0",
        (target_id,),
    ).fetchall()
    return {product_id: tuple(codes) for product_id, codes in rows}


def _recount_codes(conn: psycopg.Connection, state: _State, changed: set[int], deleted: set[int]) -> set[str]:
    """Update the per-code target counts for changed and deleted targets; the codes whose usability flipped.

    A code is usable (`hybrid` proposes pairs on it) while at most MAX_CODE_TARGETS target products carry it.
    """
    touched: set[str] = set()
    for target in changed | deleted:
        for code in state.target_codes.pop(target, ()):
            state.code_counts[code] -= 1
            touched.add(code)
    if changed:
        for product_id, codes in conn.execute(
            "SELECT product_id, codes FROM prodmatch.lexical WHERE product_id = ANY(%s)", (sorted(changed),)
        ):
            if codes:
                state.target_codes[product_id] = tuple(codes)
                state.code_counts.update(codes)
                touched.update(codes)
    flipped = set()
    for code in touched:
        count = state.code_counts[code]
        if count <= 0:
            del state.code_counts[code]
        usable = 0 < count <= MAX_CODE_TARGETS
        if usable != (code in state.usable_codes):
            flipped.add(code)
            (state.usable_codes.add if usable else state.usable_codes.discard)(code)
    return flipped


def _sources_with_codes(conn, run: _Run, codes: set[str]) -> set[int]:
    """Sources carrying any of `codes` (the changed targets' codes, and codes that became (un)usable)."""
    if not codes:
        return set()
    rows = conn.execute(
        "SELECT l.product_id FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
        " WHERE p.catalog_id = %s AND l.codes && %s::text[]",
        (run.source_id, sorted(codes)),
    ).fetchall()
    return {r[0] for r in rows}


def _lexical_kth(state: _State, only: np.ndarray, k: int) -> dict[int, float]:
    """Each source's k-th best lexical query score (-inf: fewer than k candidates), as `hybrid` ranks them."""
    ids, rows = _rows_of(state.source_lexical, only)
    target_ids, target = state.target_lexical
    out = dict.fromkeys(ids.tolist(), -np.inf)
    if not len(ids) or not len(target_ids):
        return out
    block = (_heaviest_terms(rows, _QUERY_TERMS) @ target.T.tocsr()).tocsr()
    for row, source in enumerate(ids.tolist()):
        data = block.data[block.indptr[row] : block.indptr[row + 1]]
        if len(data) >= k:
            out[source] = float(np.partition(data, len(data) - k)[len(data) - k])
    return out


def _dense_kth(state: _State, run: _Run, space: str, source_ids: np.ndarray) -> np.ndarray:
    """Each source's k-th best cosine in `space` among its candidates (-inf when it has fewer than k)."""
    if run.scorer is None:
        s, score = state.candidates.sources, state.candidates.score
    else:
        s, _, score = state.proposals.get(space, _empty_pairs()[:3])
    k = run.proposal_k
    out = np.full(len(source_ids), -np.inf)
    if not len(s):
        return out
    order = np.lexsort((-score, s))
    s, score = s[order], score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, len(s)])
    full = sizes >= k
    kth = dict(zip(s[starts[full]].tolist(), score[starts[full] + k - 1].tolist(), strict=True))
    return np.array([kth.get(int(i), -np.inf) for i in source_ids])


def _merge_by_id(
    ids: np.ndarray, changed: set[int], new_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For cached rows `ids` of which `changed` were re-read as `new_ids`: the mask of old rows to keep, the order
    that sorts (kept old rows, new rows) by id, and the merged ids in that order."""
    keep = ~np.isin(ids, list(changed))
    merged = np.concatenate([ids[keep], new_ids])
    order = np.argsort(merged, kind="stable")
    return keep, order, merged[order]


def _patch_spaces(
    conn: psycopg.Connection,
    run: _Run,
    catalog_id: int,
    cached: tuple[np.ndarray, dict[str, np.ndarray]],
    changed: set[int],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cached vectors of every space (as `fetch_spaces` reads them) with `changed` products re-read or dropped."""
    if not changed:
        return cached
    ids, vectors = cached
    new_ids, new = fetch_spaces(conn, run.model, catalog_id, "fused", product_ids=sorted(changed))
    keep, order, merged = _merge_by_id(ids, changed, new_ids)
    return merged, {
        name: np.concatenate([matrix[keep], new[name]])[order] for name, matrix in vectors.items()
    }


def _patch_lexical(
    conn: psycopg.Connection, catalog_id: int, cached: tuple[np.ndarray, sp.csr_matrix], changed: set[int]
) -> tuple[np.ndarray, sp.csr_matrix]:
    """The cached lexical rows with `changed` products re-read (or dropped when gone), ordered by id."""
    if not changed:
        return cached
    ids, rows = cached
    new_ids, new_rows = _lexical_matrix(conn, catalog_id, np.array(sorted(changed), dtype=np.int64))
    keep, order, merged = _merge_by_id(ids, changed, new_ids)
    return merged, sp.vstack([rows[keep], new_rows]).tocsr()[order]


def _rows_of(cached: tuple[np.ndarray, sp.csr_matrix], only: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
    ids, rows = cached
    keep = np.isin(ids, only)
    return ids[keep], rows[keep]


def _sorted(pairs: CandidatePairs) -> CandidatePairs:
    return pairs.take(np.lexsort((pairs.targets, pairs.sources)))


def _concat(a: CandidatePairs, b: CandidatePairs) -> CandidatePairs:
    names = a.signals.keys() | b.signals.keys()
    return CandidatePairs(
        np.concatenate([a.sources, b.sources]),
        np.concatenate([a.targets, b.targets]),
        np.concatenate([a.score, b.score]),
        {name: np.concatenate([a.signal(name), b.signal(name)]) for name in names},
    )


def _accepted_pairs(final: CandidatePairs, sources: set[int]) -> set[tuple[int, int]]:
    """The accepted (source, target) pairs of `sources`."""
    accepted = np.flatnonzero(np.asarray(final.signals["accepted"], dtype=bool))  # a few of a run's pairs
    mine = accepted[np.isin(final.sources[accepted], list(sources))]
    return set(zip(final.sources[mine].tolist(), final.targets[mine].tolist(), strict=True))


def _accepted(final: CandidatePairs) -> dict[int, frozenset[int]]:
    """Each source's accepted targets."""
    accepted = np.asarray(final.signals["accepted"], dtype=bool)
    out: dict[int, set[int]] = {}
    for source, target in zip(
        final.sources[accepted].tolist(), final.targets[accepted].tolist(), strict=True
    ):
        out.setdefault(source, set()).add(target)
    return {source: frozenset(targets) for source, targets in out.items()}


def _empty_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
