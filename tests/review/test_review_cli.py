"""The review and labels commands: thin options over prodmatch.review."""

from __future__ import annotations

from click.testing import CliRunner
from review_world import tiny_run

from prodmatch.cli import main
from prodmatch.quality.gold import read_gold
from prodmatch.review import record_label


def _run(settings, *args: str):
    return CliRunner().invoke(main, ["--database-url", settings.database_url, *args])


def test_labels_export_then_import(settings, conn, tmp_path):
    ids = tiny_run(conn)
    record_label(conn, ids["shop-0"], ids["rival-0"], "match", "alice")
    record_label(conn, ids["shop-1"], ids["rival-0"], "non-match", "alice")
    gold = tmp_path / "gold.csv"
    result = _run(settings, "labels", "export", str(gold))
    assert result.exit_code == 0, result.output
    assert "wrote 2 labelled pairs" in result.output
    assert [p.label for p in read_gold(gold)] == [1, 0]
    conn.execute("DELETE FROM prodmatch.labels")
    conn.commit()
    result = _run(settings, "labels", "import", str(gold), "--by", "bob")
    assert result.exit_code == 0 and "imported 2 labels" in result.output
    assert conn.execute("SELECT DISTINCT labelled_by FROM prodmatch.labels").fetchall() == [("bob",)]
    missing = _run(settings, "labels", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1 and "no such labels file" in missing.output


def test_review_export_and_a_clear_error_for_an_unknown_run(settings, conn, tmp_path):
    ids = tiny_run(conn)
    result = _run(
        settings, "review", "--source", "shop", "--target", "rival", "--export", str(tmp_path / "out")
    )
    assert result.exit_code == 0, result.output
    assert f"of run {ids['run']}" in result.output
    assert (tmp_path / "out" / "index.html").read_text().count('<section class="card export-pair">') == 16
    unknown = _run(settings, "review", "--run", "999", "--export", str(tmp_path / "x"))
    assert unknown.exit_code == 1 and "no match run with id 999" in unknown.output


def test_review_serves_on_the_loopback_address_until_interrupted(settings, conn, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    tiny_run(conn)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "PRODMATCH_DATABASE_URL": settings.database_url}
    server = subprocess.Popen(
        [sys.executable, "-m", "prodmatch.cli", "review", "--port", str(port), "--user", "carol"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/label", timeout=2).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert "Same product?" in page and "labelling as <strong>carol</strong>" in page
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/label" in err
