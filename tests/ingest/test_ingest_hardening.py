"""Ingest hardening: real legacy exports load whole, bad rows are rejects (never fatal), memory is bounded per
line, a truncated file is an error before anything is written, --prune has a ceiling, and an ingest does not
block an application's INSERT into the same catalogue."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import psycopg
import pytest

from prodmatch.errors import IngestError
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.sources import IngestOptions


def counts(conn, catalog: str = "shop") -> int:
    return conn.execute(
        "SELECT count(*) FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = %s",
        (catalog,),
    ).fetchone()[0]


def test_cp1252_file_with_plain_ascii_first_256_kib_loads_whole(conn, tmp_path):
    filler = "".join(f"SKU-{i:06d},Plain ascii product number {i},9.99\n" for i in range(9000))
    assert len(filler) > 256 * 1024
    late = "LATE-1,Caf\u00e9 cr\u00e8me Brand\u00ae,4.50\nLATE-2,Na\u00efve \u00ab quote \u00bb,1.00\n"
    path = tmp_path / "export.csv"
    path.write_bytes(("id,title,price\n" + filler + late).encode("cp1252"))

    result = ingest_file(conn, path, "shop")

    assert (result.rejected, result.loaded, result.encoding) == (0, 9002, "cp1252")
    title = conn.execute("SELECT title FROM prodmatch.products WHERE external_id = 'LATE-1'").fetchone()[0]
    assert title == "Caf\u00e9 cr\u00e8me Brand\u00ae"


def test_a_row_no_legacy_encoding_fits_is_rejected_naming_the_option(conn, tmp_path):
    # 0x81 is undefined in cp1252 and 0x98 in cp1251; latin-1 would decode both as control characters.
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"id,title\nA,caf\xe9\nB,bad \x81 byte\nC,also \x98 bad\n")
    result = ingest_file(conn, path, "shop")
    assert result.encoding in ("cp1252", "cp1251") and (result.loaded, result.rejected) == (2, 1)
    assert "--encoding" in result.rejects[0].reason


BAD_JSONL = {
    "nul in title": ('{"id": "b", "title": "x\\u0000y"}', "title", "NUL"),
    "nul in attribute": ('{"id": "b", "title": "x", "colour": "re\\u0000d"}', "colour", "NUL"),
    "nul in id": ('{"id": "b\\u0000", "title": "x"}', "external_id", "NUL"),
    "NaN": ('{"id": "b", "title": "x", "w": NaN}', "w", "finite"),
    "Infinity price": ('{"id": "b", "title": "x", "price": Infinity}', "price", "price"),
    "lone surrogate": ('{"id": "b", "title": "x\\ud800"}', "title", "surrogate"),
    "huge integer": ('{"id": "b", "title": "x", "n": ' + "9" * 5000 + "}", None, "cannot read"),
    "deep nesting": ('{"id": "b", "title": "x", "d": ' + "[" * 5000 + "]" * 5000 + "}", None, "nested"),
    "nesting over 100": ('{"id": "b", "title": "x", "d": ' + "[" * 150 + "]" * 150 + "}", "d", "nested"),
    "9 KB id": ('{"id": "' + "x" * 9000 + '", "title": "x"}', "external_id", "1024 bytes"),
    "huge title": ('{"id": "b", "title": "' + "t" * 200_000 + '"}', "title", "longer than"),
}


@pytest.mark.parametrize("case", list(BAD_JSONL))
def test_bad_jsonl_row_is_a_reject_and_good_rows_load(conn, tmp_path, case):
    line, field, reason = BAD_JSONL[case]
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "title": "ok"}\n' + line + '\n{"id": "c", "title": "ok too"}\n')

    result = ingest_file(conn, path, "shop")

    assert (result.loaded, result.rejected) == (2, 1)
    reject = result.rejects[0]
    assert (reject.file, reject.line, reject.field) == (str(path), 2, field)
    assert reason in reject.reason
    assert counts(conn) == 2


def test_csv_nul_byte_and_undecodable_id_are_rejects(conn, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(
        "id,title,colour\nA,Кроссовки,red\nB,x\x00y,red\nC\xff,ok,red\nD,ok,bl\x00ue\nE,Ботинки,red\n".encode(
            "utf-8", "surrogateescape"
        ).replace(b"C\xc3\xbf", b"C\xff")
    )
    result = ingest_file(conn, path, "shop", IngestOptions(encoding="utf-8"))
    assert (result.loaded, result.rejected) == (2, 3)
    by_line = {r.line: r for r in result.rejects}
    assert by_line[3].field == "title" and "NUL" in by_line[3].reason
    assert by_line[4].external_id is None and "undecodable" in by_line[4].reason
    assert by_line[5].field == "colour"


def test_short_csv_row_is_rejected_not_padded(conn, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,title,price,image\nA,one,1,http://x/a.jpg\nB,two\nC,three,3,http://x/c.jpg\n")
    result = ingest_file(conn, path, "shop")
    assert (result.loaded, result.rejected) == (2, 1)
    assert result.rejects[0].line == 3 and "2 fields but the header has 4" in result.rejects[0].reason


def test_csv_cut_off_mid_row_is_an_error_before_anything_is_written(conn, tmp_path):
    rows = "".join(f"SKU-{i},Running shoe {i},101.99,https://cdn.example.com/{i}.jpg\n" for i in range(100))
    path = tmp_path / "part.csv"
    path.write_text("id,title,price,image\n" + rows + "SKU-100,Running shoe 100")
    with pytest.raises(IngestError, match="cut off"):
        ingest_file(conn, path, "shop")
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM prodmatch.ingest_runs").fetchone()[0] == 0


def test_truncated_gzip_is_a_clear_error(conn, tmp_path):
    rows = "".join(f'{{"id": "P{i}", "title": "product {i} {i * 7919 % 1000003}"}}\n' for i in range(60000))
    data = gzip.compress(rows.encode(), compresslevel=1)
    assert len(rows) > 256 * 1024
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(IngestError, match="truncated"):
        ingest_file(conn, path, "shop")
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 0


def test_one_line_bomb_is_refused_in_bounded_memory(conn, tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b'{"id": "ok", "title": "fine"}\n{"id": "big", "title": "')
        block = b"A" * (1 << 20)
        for _ in range(400):
            f.write(block)
        f.write(b'"}\n{"id": "ok2", "title": "fine too"}\n')
    assert path.stat().st_size < 4 * 2**20

    tracemalloc.start()
    try:
        result = ingest_file(conn, path, "shop")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert (result.loaded, result.rejected) == (2, 1)
    assert result.rejects[0].line == 2 and "longer than" in result.rejects[0].reason
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_csv_field_over_the_line_limit_is_a_reject(conn, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('id,title\nA,ok\nB,"' + "x\n" * 2000 + '"\nC,ok\n')
    result = ingest_file(conn, path, "shop", IngestOptions(line_limit=1024))
    # Past a refused field the quoting cannot be trusted: what follows is rejected too, nothing crashes.
    assert result.loaded >= 1 and "field larger than field limit" in result.rejects[0].reason


def test_csv_record_over_the_row_cap_is_an_error(conn, tmp_path):
    # Each quoted field stays under the field limit, but the record spans line after line: memory per record
    # is capped at 8 line limits, and such a file (an unclosed quote, a runaway export) is refused.
    fields = ",".join('"' + "z" * 500 + '\n"' for _ in range(40))
    path = tmp_path / "rows.csv"
    path.write_text("id,title\nA,ok\nB," + fields + "\nC,ok\n")
    with pytest.raises(IngestError, match="runs over 8,192 characters"):
        ingest_file(conn, path, "shop", IngestOptions(line_limit=1024))
    assert counts(conn) == 0


def _catalogue_csv(path: Path, n: int) -> Path:
    path.write_text("id,title\n" + "".join(f"SKU-{i},product {i}\n" for i in range(n)))
    return path


def test_prune_refuses_to_delete_more_than_prune_max_unless_forced(conn, tmp_path):
    ingest_file(conn, _catalogue_csv(tmp_path / "full.csv", 100), "shop")
    part = _catalogue_csv(tmp_path / "part.csv", 60)

    refused = ingest_file(conn, part, "shop", IngestOptions(prune=True))
    assert refused.deleted == 0 and counts(conn) == 100
    assert "40 of 100" in refused.prune_skipped and "--force" in refused.prune_skipped

    allowed = ingest_file(conn, part, "shop", IngestOptions(prune=True, prune_max=0.5))
    assert allowed.deleted == 40 and counts(conn) == 60


def test_prune_force_deletes_past_the_ceiling(conn, tmp_path):
    ingest_file(conn, _catalogue_csv(tmp_path / "full.csv", 100), "shop")
    result = ingest_file(
        conn, _catalogue_csv(tmp_path / "p.csv", 10), "shop", IngestOptions(prune=True, force=True)
    )
    assert result.deleted == 90 and counts(conn) == 10


def test_an_ingest_does_not_block_an_application_insert(conn, settings, tmp_path):
    ingest_file(conn, _catalogue_csv(tmp_path / "first.csv", 10), "shop")  # the catalogue exists
    conn.commit()
    # The ingest's transaction stays open (as during a long load) until the outer transaction ends.
    with conn.transaction():
        ingest_file(conn, _catalogue_csv(tmp_path / "second.csv", 2000), "shop")
        with psycopg.connect(settings.database_url, autocommit=True) as app:
            app.execute("SET lock_timeout = '1s'")
            app.execute(
                "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
                " SELECT id, 'APP-1', 'from the application' FROM prodmatch.catalogs WHERE name = 'shop'"
            )
    assert counts(conn) == 2001


def test_a_first_load_racing_an_application_row_with_the_same_id_keeps_both_sides_working(
    conn, settings, tmp_path
):
    # The catalogue is empty when the ingest checks, so it takes the fast path (COPY straight into products); an
    # application inserts the same id meanwhile. The COPY waits for the application, fails on the unique key once
    # it commits, and the ingest falls back to staging + upsert: it then updates the application's row.
    import threading
    import time

    ingest_file(conn, _catalogue_csv(tmp_path / "empty.csv", 0), "shop")
    conn.commit()
    app = psycopg.connect(settings.database_url)
    app.execute(
        "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
        " SELECT id, 'SKU-5', 'application row' FROM prodmatch.catalogs WHERE name = 'shop'"
    )
    errors: list = []

    def load() -> None:
        try:
            with psycopg.connect(settings.database_url) as own:
                ingest_file(own, _catalogue_csv(tmp_path / "b.csv", 20), "shop")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=load)
    thread.start()
    with psycopg.connect(settings.database_url, autocommit=True) as watcher:
        for _ in range(300):
            waiting = watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query ~ '(COPY|INSERT INTO) prodmatch.products'"
                " AND wait_event_type = 'Lock' AND pid <> %s",
                (app.info.backend_pid,),
            ).fetchone()
            if waiting:
                break
            time.sleep(0.05)
    app.commit()
    app.close()
    thread.join(30)
    assert waiting and not errors
    assert counts(conn) == 20
    title = conn.execute("SELECT title FROM prodmatch.products WHERE external_id = 'SKU-5'").fetchone()[0]
    assert title == "product 5"
