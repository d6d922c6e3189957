"""prodmatch behind a real PgBouncer in transaction mode: what works there, and what is refused in one line.

A module-scoped PgBouncer (tests/pgbouncer.py) forwards every database to the session's embedded server, handing
server connections out in turn, so that two transactions of one client land on different backends as they would
under load. Each test reaches its fresh database through it: ingest, `embed`, the SQL API (`similar`, `search`),
`link` (lexical and the built-in matcher) must work; `embed --watch` and `link --watch` (LISTEN/NOTIFY) must refuse
with a message that names the pooler and the fix. Skipped when the `pgbouncer` binary is not installed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from builders import WORDS, product_image, write_items
from click.testing import CliRunner
from pgbouncer import pgbouncer_binary, start_pgbouncer

from prodmatch import match
from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.encoders import Encoder
from prodmatch.embed.registry import add_model
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.errors import ConfigError
from prodmatch.ingest.load import ingest_file
from prodmatch.match.watch import watch_link
from prodmatch.store import pooler
from prodmatch.store.pooler import require_notifications

BINARY = pgbouncer_binary()
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="pgbouncer is not installed (apt-get install pgbouncer)"
)


@pytest.fixture(scope="module")
def bouncer(pg_server, tmp_path_factory):
    """A PgBouncer in transaction mode in front of the embedded server; stopped at the end of the module."""
    running = start_pgbouncer(BINARY, pg_server, tmp_path_factory.mktemp("pgbouncer"))
    yield running
    running.stop()


@pytest.fixture
def pooled(settings, bouncer):
    """The test's database, reached through PgBouncer."""
    name = urlsplit(settings.database_url).path.lstrip("/")
    bouncer.warm(name)
    return replace(settings, database_url=bouncer.url(name))


@pytest.fixture
def catalogues(pooled, tmp_path):
    """shop and rival (8 products each, rival-0..5 the same as shop-0..5) ingested through the pooler."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(12):
        product_image(images / f"{i}.png", i * 7 + 3, fmt="PNG")
    shop = [(f"shop-{i}", f"{WORDS[i % 12]} model {i}", f"{i}.png", 100 + i) for i in range(8)]
    rival = [(f"rival-{i}", f"{WORDS[i % 12]} model {i}", f"{i}.png", 100 + i) for i in range(6)]
    rival += [(f"rival-{i}", f"{WORDS[(i + 5) % 12]} other {i * 11}", f"{i + 4}.png", 50) for i in (6, 7)]
    with db.connection(pooled) as conn:
        for name, items in (("shop", shop), ("rival", rival)):
            report = ingest_file(conn, write_items(tmp_path, name, items), name)
            assert report.inserted == len(items)
    return pooled


def test_the_pooler_hands_one_connection_several_backends(pooled, settings):
    with db.connection(pooled, autocommit=True) as conn:
        pids = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(6)}
        assert conn.prepare_threshold is None  # a statement prepared on one backend would be run on another
    assert len(pids) > 1  # otherwise the tests below would not see what a busy pooler does
    with db.connection(settings) as direct:
        assert direct.prepare_threshold == 5  # psycopg's default, kept where prepared statements are safe


def test_ingest_embed_sql_api_and_link_through_the_pooler(catalogues, tiny_clip_dir):
    with db.connection(catalogues) as conn:
        add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
    [summary] = embed(catalogues, EmbedOptions(batch_size=3))
    assert (summary.embedded, summary.failed) == (16, 0)
    with db.connection(catalogues) as conn:
        pending = conn.execute("SELECT count(*) FROM prodmatch.embeddings WHERE status <> 'done'").fetchone()[
            0
        ]
        assert pending == 0
        shop_0 = db.find_product(conn, "shop", "shop-0")
        for _ in range(8):  # more than psycopg's prepare threshold (5): a prepared statement would be lost
            neighbours = match.similar(conn, shop_0, k=3, space="fused", in_catalog="rival")
        assert len(neighbours) == 3
        found = match.search(conn, WORDS[1], k=2, space="text")
        assert len(found) == 2
        lexical = match.link(conn, "shop", "rival", space="lexical", threshold=0.0)
        assert lexical.sources == 8 and lexical.pairs > 0
        builtin = match.link(conn, "shop", "rival")
        assert builtin.matcher is not None and builtin.sources == 8


def test_two_workers_through_the_pooler_embed_each_product_once(catalogues, tiny_clip_dir):
    with db.connection(catalogues) as conn:
        model = add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
    # Loaded here, one after the other: from_pretrained changes torch's default dtype while it runs, so two
    # threads loading at once can break each other.
    encoders = [Encoder.load(model.source, precision="fp32") for _ in range(2)]
    summaries, errors = [], []

    def work(encoder):
        try:
            summaries.extend(embed(catalogues, EmbedOptions(batch_size=2), encoder_factory=lambda m: encoder))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(encoder,)) for encoder in encoders]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == [] and len(summaries) == 2
    assert sum(s.embedded for s in summaries) == 16
    with db.connection(catalogues) as conn:
        rows = conn.execute("SELECT status, attempts, claimed_pid FROM prodmatch.embeddings").fetchall()
    assert rows == [("done", 1, None)] * 16


def test_embed_watch_through_the_pooler_says_what_to_do(catalogues, tiny_clip_dir, monkeypatch):
    monkeypatch.setattr(pooler, "PROBE_SECONDS", 0.5)  # the NOTIFY never comes: do not wait the full 2 s
    with db.connection(catalogues) as conn:
        add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
    with pytest.raises(ConfigError) as refused:
        embed(catalogues, EmbedOptions(watch=True), stop=threading.Event())
    message = str(refused.value)
    assert "\n" not in message
    assert "transaction" in message and "session" in message and "direct" in message
    done = CliRunner().invoke(main, ["--database-url", catalogues.database_url, "embed", "--watch"])
    assert done.exit_code == 1
    assert (
        done.output.strip().splitlines()[-1] == f"Error: {message}"
    )  # after the progress bars: no traceback
    assert "Traceback" not in done.output


def test_link_watch_through_the_pooler_says_what_to_do(catalogues, settings, monkeypatch):
    monkeypatch.setattr(pooler, "PROBE_SECONDS", 0.5)
    with db.connection(settings) as conn:  # the run itself is made on a direct connection
        run = match.link(conn, "shop", "rival", space="lexical", threshold=0.0)
    with pytest.raises(ConfigError, match="session-mode pool"):
        watch_link(catalogues, run.run_id, stop=threading.Event(), poll_seconds=0.1)


def test_a_direct_connection_passes_the_notification_check(settings):
    with db.connection(settings, autocommit=True) as listener:
        started = time.perf_counter()
        require_notifications(listener, settings, "embed --watch")  # no error
        assert time.perf_counter() - started < pooler.PROBE_SECONDS  # it arrived; no timeout was waited out
        listener.execute("SELECT 1")  # and the connection is still usable
