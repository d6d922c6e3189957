"""`watch_link` keeps a stored link run equal to a fresh full link while both catalogues change by plain SQL.

A watcher thread follows the run; after each insert, change or delete (shop or competitor side) the test waits
until a pass's checkpoint is past the change, reads the run's pairs, then runs a fresh `link` with the same
parameters on the same data (which replaces the run; the watcher follows the new one) and compares the two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from builders import shoes_in_two_currencies, shoes_in_two_scripts

from prodmatch import match
from prodmatch.demo.catalogues import generate
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.ingest.load import ingest_file
from prodmatch.match.watch import WatchPass, watch_link
from prodmatch.quality.matchers import train_and_store


class Watching:
    """A watcher thread and the passes it reported."""

    def __init__(self, settings, run_id: int, poll_seconds: float = 0.2) -> None:
        self.poll_seconds = poll_seconds
        self.stop = threading.Event()
        self.passes: list[WatchPass] = []
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self.window: list[WatchPass] = []  # the passes up to the last caught_up since the one before it
        self._consumed = 0
        self.thread = threading.Thread(target=self._run, args=(settings, run_id), daemon=True)
        self.thread.start()

    def _run(self, settings, run_id: int) -> None:
        try:
            watch_link(settings, run_id, stop=self.stop, poll_seconds=self.poll_seconds, on_pass=self._report)
        except BaseException as error:  # surfaced by caught_up
            self.error = error

    def _report(self, done: WatchPass) -> None:
        with self.changed:
            self.passes.append(done)
            self.changed.notify_all()

    def caught_up(self, conn, timeout: float = 60.0) -> WatchPass:
        """The first pass whose checkpoint is past everything this connection committed.

        A NOTIFY may wake the watcher before this call reads the clock, so the change can be handled by an
        earlier pass than the one returned: `window` holds every pass since the previous call's."""
        conn.commit()
        now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.commit()  # an open transaction here would hold the watcher's checkpoint back
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                assert self.error is None, self.error
                at = next((i for i, p in enumerate(self.passes) if p.checkpoint > now), None)
                if at is not None:
                    self.window = self.passes[self._consumed : at + 1]
                    self._consumed = at + 1
                    return self.passes[at]
                left = deadline - time.monotonic()
                assert left > 0, f"the watcher did not catch up: {self.passes[-3:]}"
                self.changed.wait(min(left, 0.5))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def _stored(conn, run_id: int) -> list[tuple]:
    rows = conn.execute(
        "SELECT source_product_id, target_product_id, rank, accepted,"
        " round(coalesce(match_probability, lexical_similarity)::numeric, 4)"
        " FROM prodmatch.matches WHERE run_id = %s ORDER BY 1, 3, 2",
        (run_id,),
    ).fetchall()
    conn.commit()
    return rows


def _product(conn, catalog: str, offset: int) -> int:
    return conn.execute(
        "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = %s ORDER BY p.id OFFSET %s LIMIT 1",
        (catalog, offset),
    ).fetchone()[0]


def _copy_product(conn, product_id: int, external_id: str, suffix: str) -> None:
    """An application's plain-SQL INSERT: a near copy of an existing product under a new id."""
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, category, price, currency)"
        " SELECT catalog_id, %s, title || %s, brand, category, price, currency FROM prodmatch.products WHERE id = %s",
        (external_id, suffix, product_id),
    )


def _copy_with_image(conn, original: str, external_id: str, suffix: str) -> None:
    """An application's plain-SQL INSERT of a near copy of product `original` (an external id), image included."""
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title, image, price, currency)"
        " SELECT catalog_id, %s, title || %s, image, price, currency FROM prodmatch.products WHERE external_id = %s",
        (external_id, suffix, original),
    )


def _add_change_and_drop_a_target(conn, original: str, suffix: str, check) -> None:
    """A near copy of target `original` ("rival-new") inserted, then `original` retitled, then the copy deleted,
    each committed and followed by `check()`."""
    _copy_with_image(conn, original, "rival-new", suffix)
    conn.commit()
    check()
    conn.execute("UPDATE prodmatch.products SET title = 'something else' WHERE external_id = %s", (original,))
    conn.commit()
    check()
    conn.execute("DELETE FROM prodmatch.products WHERE external_id = 'rival-new'")
    conn.commit()
    check()


@pytest.fixture
def demo(conn, tmp_path):
    files = generate(tmp_path / "demo", 100, seed=3, image_size=32)
    ingest_file(conn, files.shop, "shop")
    ingest_file(conn, files.competitor, "competitor")
    conn.commit()
    return files


CASES = {
    "lexical": {"k": 3},
    "lexical-one-to-one": {"k": 3, "threshold": 0.2, "one_to_one": True},
    "matcher": {"k": 3, "matcher": "m"},
    "matcher-one-to-one": {"k": 3, "matcher": "m", "one_to_one": True},
}


@pytest.mark.parametrize("case", list(CASES))
def test_watched_run_equals_a_fresh_link_after_inserts_changes_and_deletes(settings, conn, demo, case):
    options = CASES[case]
    if "matcher" in options:
        train_and_store(conn, demo.gold, "shop", "competitor", name="m")
    run = match.link(conn, "shop", "competitor", **options)
    watching = Watching(settings, run.run_id)
    try:
        first = watching.caught_up(conn)
        assert watching.window[0].full and first.run_id == run.run_id

        def check(expect_recompute: bool = True) -> None:
            done = watching.caught_up(conn)
            window = watching.window
            assert not any(p.full for p in window), window  # handled incrementally, not by redoing the run
            assert sum(p.recomputed_sources for p in window) >= 1 or not expect_recompute, window
            watched = _stored(conn, done.run_id)
            fresh = match.link(conn, "shop", "competitor", **options)  # replaces the run
            assert watched == _stored(conn, fresh.run_id)
            assert watching.caught_up(conn).run_id == fresh.run_id  # the watcher follows the re-run

        target, source = _product(conn, "competitor", 5), _product(conn, "shop", 7)
        _copy_product(conn, target, "new-target", " plus")  # a target that competes with an existing one
        conn.commit()
        check()
        _copy_product(conn, source, "new-source", " ")
        conn.commit()
        check()
        conn.execute("UPDATE prodmatch.products SET title = title || ' 2 pack' WHERE id = %s", (target,))
        conn.execute("UPDATE prodmatch.products SET title = 'Bosch drill 18V' WHERE id = %s", (source,))
        conn.commit()
        check()
        accepted = conn.execute(
            "SELECT target_product_id FROM prodmatch.matches WHERE run_id = %s AND accepted"
            " ORDER BY source_product_id LIMIT 1",
            (watching.passes[-1].run_id,),
        ).fetchone()[0]
        conn.execute("DELETE FROM prodmatch.products WHERE id = %s", (accepted,))  # a matched target goes
        conn.commit()
        check()
        conn.execute("DELETE FROM prodmatch.products WHERE id = %s", (_product(conn, "shop", 11),))
        conn.commit()
        check(expect_recompute=False)  # a deleted source only loses its rows
    finally:
        watching.close()


def test_watch_stops_with_an_error_when_its_run_is_deleted(settings, conn, demo):
    run = match.link(conn, "shop", "competitor", k=2)
    watching = Watching(settings, run.run_id)
    try:
        watching.caught_up(conn)
        conn.execute("DELETE FROM prodmatch.match_runs WHERE id = %s", (run.run_id,))
        conn.commit()
        watching.thread.join(timeout=30)
        assert "was deleted" in str(watching.error)
    finally:
        watching.close()


def test_link_watch_command_shows_an_inserted_offer_in_matches_v_then_stops_on_sigterm(settings, conn, demo):
    env = {
        **os.environ,
        "PRODMATCH_DATABASE_URL": settings.database_url,
        "PRODMATCH_HOME": str(settings.home),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    command = [sys.executable, "-c", "from prodmatch.cli import main; main()", "link", "--source", "shop"]
    command += ["--target", "competitor", "--k", "2", "--watch", "--poll-seconds", "0.2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not conn.execute("SELECT count(*) FROM prodmatch.matches").fetchone()[0]:
            conn.commit()
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        _copy_product(conn, _product(conn, "shop", 3), "app-offer", " new")
        conn.commit()
        found = []
        while not found:
            found = conn.execute(
                "SELECT target_external_id FROM prodmatch.matches_v WHERE source_external_id = 'app-offer'"
            ).fetchall()
            conn.commit()
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        assert len(found) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "watched run" in err and "SELECT * FROM prodmatch.matches_v" in out


@pytest.mark.parametrize(
    "options",
    [{"k": 3, "mode": "exact"}, {"k": 2, "mode": "exact", "one_to_one": True}, {"k": 3, "mode": "ann"}],
)
def test_watched_cosine_run_follows_vectors_as_the_worker_writes_them(settings, conn, matched, options):
    run = match.link(conn, "shop", "rival", space="fused", **options)
    watching = Watching(settings, run.run_id)
    try:
        watching.caught_up(conn)

        def check() -> None:
            embed(settings, EmbedOptions(batch_size=16))  # the new and changed products' vectors become ready
            done = watching.caught_up(conn)
            assert not any(p.full for p in watching.window), watching.window
            watched = _stored(conn, done.run_id)
            fresh = match.link(conn, "shop", "rival", space="fused", **options)
            assert watched == _stored(conn, fresh.run_id)
            watching.caught_up(conn)

        # A new source first: the reverse search of the target changes below must see its (cached) vector.
        _copy_with_image(conn, "shop-3", "shop-new", " v2")
        conn.commit()
        check()
        _add_change_and_drop_a_target(conn, "rival-3", "", check)
    finally:
        watching.close()


def test_watched_lexical_run_follows_target_changes_while_a_model_is_registered(settings, conn, matched):
    # A lexical run of a database with a model once made the reverse search read "lexical" vectors (a crash on
    # the first changed target; found by benchmarks/load.py's probing).
    run = match.link(conn, "shop", "rival", space="lexical", k=3)
    watching = Watching(settings, run.run_id)
    try:
        watching.caught_up(conn)

        def check() -> None:
            done = watching.caught_up(conn)
            watched = _stored(conn, done.run_id)
            fresh = match.link(conn, "shop", "rival", space="lexical", k=3)
            assert watched == _stored(conn, fresh.run_id)
            watching.caught_up(conn)

        _add_change_and_drop_a_target(conn, "rival-3", "", check)
    finally:
        watching.close()


def _within(seconds: float, conn, query: str, params: tuple, expected) -> float:
    """Seconds until `query` returns `expected` (fails after `seconds`)."""
    started = time.monotonic()
    while True:
        got = conn.execute(query, params).fetchone()[0]
        conn.commit()
        if got == expected:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, f"still {got!r}, not {expected!r}, after {seconds} s"
        time.sleep(0.05)


def test_deletes_and_model_less_inserts_wake_the_watcher_before_its_poll(settings, conn, demo):
    """NOTIFY prodmatch_changed (sql/changes.sql): with a 60 s poll, the changes still show within seconds."""
    # No model registered: the product INSERT sends no prodmatch_pending.
    run = match.link(conn, "shop", "competitor", k=3)
    watching = Watching(settings, run.run_id, poll_seconds=60.0)
    try:
        watching.caught_up(conn)
        _copy_product(conn, _product(conn, "shop", 5), "shop-late", " late")
        conn.commit()
        inserted = _within(
            30,
            conn,
            "SELECT count(*) FROM prodmatch.matches_v WHERE run_id = %s AND source_external_id = 'shop-late'",
            (run.run_id,),
            3,
        )
        source, target = conn.execute(
            "SELECT source_product_id, target_product_id FROM prodmatch.matches WHERE run_id = %s"
            " ORDER BY source_product_id LIMIT 1",
            (run.run_id,),
        ).fetchone()
        conn.execute("DELETE FROM prodmatch.products WHERE id = %s", (target,))  # its pairs go by cascade
        conn.commit()
        deleted = _within(  # the watcher gives the source its next candidate back
            30,
            conn,
            "SELECT count(*) FROM prodmatch.matches WHERE run_id = %s AND source_product_id = %s",
            (run.run_id, source),
            3,
        )
        # The pass is reported just after its commit, which the query above may see first.
        reported = time.monotonic() + 10
        while not any(p.deleted == 1 for p in watching.passes) and time.monotonic() < reported:
            time.sleep(0.05)
        assert any(p.deleted == 1 for p in watching.passes)
        assert inserted < 30 and deleted < 30  # woken, not polled: inside half the 60 s poll interval
    finally:
        watching.close()


def test_watched_matcher_run_with_a_model_keeps_the_target_side_in_memory(settings, conn, matched, tmp_path):
    """A matcher run over a model's vectors: a pass gathers from the kept target side, patched on changes."""
    gold = tmp_path / "gold.csv"
    gold.write_text(
        "source_catalog,source_id,target_catalog,target_id,label\n"
        + "".join(f"shop,shop-{i},rival,rival-{i},1\n" for i in range(16))
    )
    train_and_store(conn, gold, "shop", "rival", model="clip", name="mm", k=3)
    options = {"k": 3, "matcher": "mm", "one_to_one": True}
    run = match.link(conn, "shop", "rival", **options)
    watching = Watching(settings, run.run_id)
    try:
        watching.caught_up(conn)

        def check() -> None:
            embed(settings, EmbedOptions(batch_size=16))
            done = watching.caught_up(conn)
            assert not any(p.full for p in watching.window), watching.window
            assert sum(p.recomputed_sources for p in watching.window) >= 1, watching.window
            watched = _stored(conn, done.run_id)
            fresh = match.link(conn, "shop", "rival", **options)
            assert watched == _stored(conn, fresh.run_id)
            watching.caught_up(conn)

        _add_change_and_drop_a_target(conn, "rival-4", " new", check)
    finally:
        watching.close()


def _watched_insert_scores_like_a_fresh_link(settings, conn, catalogs, files, insert, pair, signal) -> tuple:
    """Ingest two catalogue `files` as `catalogs`, link them with the built-in matcher and watch the run; then
    an application `insert`s an offer (SQL). The watcher's pass must not recompute the whole run, and must store
    what a fresh link stores. Returns (accepted, `signal` as stored or None) of the watched run's `pair`."""
    for path, name in zip(files, catalogs, strict=True):
        ingest_file(conn, path, name)
    run = match.link(conn, *catalogs)
    watching = Watching(settings, run.run_id)
    try:
        watching.caught_up(conn)
        conn.execute(insert)
        done = watching.caught_up(conn)
        assert not any(p.full for p in watching.window), watching.window
        watched = _stored(conn, done.run_id)
        stored = conn.execute(
            "SELECT m.accepted, (m.signals ->> %s)::float8 FROM prodmatch.matches m"
            " JOIN prodmatch.products s ON s.id = m.source_product_id"
            " JOIN prodmatch.products t ON t.id = m.target_product_id"
            " WHERE m.run_id = %s AND s.external_id = %s AND t.external_id = %s",
            (signal, done.run_id, *pair),
        ).fetchone()
        assert watched == _stored(conn, match.link(conn, *catalogs).run_id)
        return tuple(stored)
    finally:
        watching.close()


def test_watched_run_keeps_catalogues_in_two_currencies_apart(settings, conn, tmp_path):
    """A yen shop linked to a dollar marketplace (no currency column) by the built-in matcher: an offer the
    application inserts later is scored with the price scales the watcher read, as a fresh link scores it."""
    twin = _watched_insert_scores_like_a_fresh_link(
        settings,
        conn,
        ("yen-shop", "dollar-market"),
        shoes_in_two_currencies(tmp_path),
        # s16's twin, at a dollar price, written by an application
        "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand, price)"
        " SELECT catalog_id, 'm16', 'ASICS Navy Slip-On Loafer - Size 40', 'Asics', 90.0"
        " FROM prodmatch.products WHERE external_id = 'm0'",
        ("s16", "m16"),
        "price_log_ratio",
    )
    assert twin == (True, None)  # accepted, and no 150x price clash stored with it


def test_watched_run_keeps_the_brand_aliases_of_its_catalogues(settings, conn, tmp_path):
    """A shop writing brands in Chinese linked to a marketplace that writes some in both scripts
    ("Warrior/回力"): an offer the application inserts later, in Latin letters only, is scored with the aliases
    the watcher read, as a fresh link scores it."""
    twin = _watched_insert_scores_like_a_fresh_link(
        settings,
        conn,
        ("chinese-shop", "market"),
        shoes_in_two_scripts(tmp_path),
        # s23's twin (回力 court sneaker red 40码), written by an application
        "INSERT INTO prodmatch.products (catalog_id, external_id, title, brand)"
        " SELECT catalog_id, 'm23', 'WARRIOR Court Sneaker Red - Size 40', 'Warrior'"
        " FROM prodmatch.products WHERE external_id = 'm0'",
        ("s23", "m23"),
        "brand_equal",
    )
    assert twin[1] == 1.0  # 回力 = Warrior, through the marketplace's "Warrior/回力"


def test_code_counts_follow_changed_and_deleted_targets_and_say_which_codes_flipped(conn):
    """The watcher recounts codes per changed target instead of scanning the catalogue: same usable set."""
    from prodmatch.embed.lexical_refresh import refresh_lexical
    from prodmatch.match.hybrid import MAX_CODE_TARGETS
    from prodmatch.match.watch import _recount_codes, _State, _target_codes

    catalog = conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('t') RETURNING id").fetchone()[0]
    for i in range(MAX_CODE_TARGETS + 1):  # one code on 21 products: a word, not an identifier
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title) VALUES (%s, %s, %s)",
            (catalog, f"t{i}", f"Lamp PS-LX350H variant {i}"),
        )
    conn.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title) VALUES (%s, 'odd', 'Drill GSR-120LI')",
        (catalog,),
    )
    conn.commit()
    refresh_lexical(conn)
    conn.commit()

    def usable_now() -> set[str]:  # the definition: codes carried by at most MAX_CODE_TARGETS targets
        counts: dict[str, int] = {}
        for codes in _target_codes(conn, catalog).values():
            for code in codes:
                counts[code] = counts.get(code, 0) + 1
        return {c for c, n in counts.items() if n <= MAX_CODE_TARGETS}

    state = _State(None, None, set(), set())
    state.target_codes = _target_codes(conn, catalog)
    for codes in state.target_codes.values():
        state.code_counts.update(codes)
    state.usable_codes = {c for c, n in state.code_counts.items() if n <= MAX_CODE_TARGETS}
    assert "PSLX350H" not in state.usable_codes and "GSR120LI" in state.usable_codes

    gone = conn.execute("SELECT id FROM prodmatch.products WHERE external_id = 't0'").fetchone()[0]
    odd = conn.execute("SELECT id FROM prodmatch.products WHERE external_id = 'odd'").fetchone()[0]
    conn.execute("DELETE FROM prodmatch.products WHERE id = %s", (gone,))
    conn.execute("UPDATE prodmatch.products SET title = 'Drill GSR-180LI' WHERE id = %s", (odd,))
    conn.commit()
    refresh_lexical(conn)
    conn.commit()
    flipped = _recount_codes(conn, state, {odd}, {gone})
    assert flipped == {"PSLX350H", "GSR120LI", "GSR180LI"}  # 20 carriers now; one code gone, one new
    assert state.usable_codes == usable_now()
