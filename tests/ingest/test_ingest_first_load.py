"""Ingest's first load of a catalogue: good rows COPY straight into products, with the general path's results.

A new catalogue skips the staging table and the upsert (`ingest.load._copy_new_catalog`); these tests check that
it keeps what the general path gives: rejects with their file line and field, pending embeddings from the
triggers, nothing half-loaded after a failure and a complete re-run after it, and a fall-back to the general path
(with the same rejects) for duplicate ids or many rejects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prodmatch.errors import IngestError
from prodmatch.ingest import load
from prodmatch.ingest.load import ingest_file
from prodmatch.ingest.sources import IngestOptions

GOOD = [f"SKU-{i},product {i},Brand,{i}.50" for i in range(1, 6)]
HEADER = "id,title,brand,price"


def write(path: Path, lines: list[str], *, final_newline: bool = True) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + ("\n" if final_newline else ""))
    return path


def no_upsert(*args, **kwargs):
    raise AssertionError("the first load of a catalogue must not go through staging + upsert")


def rejects(result) -> list[tuple[int, str | None, str]]:
    return [(r.line, r.field, r.reason) for r in result.rejects]


def test_first_load_copies_into_products_keeps_rejects_and_queues_embeddings(
    conn, clip_model, tmp_path, monkeypatch
):
    monkeypatch.setattr(load, "_upsert", no_upsert)
    lines = [GOOD[0], "SKU-X,bad price,Brand,twelve", GOOD[1], ",no id,Brand,1", GOOD[2]]
    result = ingest_file(conn, write(tmp_path / "new.csv", lines), "shop")

    assert (result.rows, result.inserted, result.updated, result.rejected) == (5, 3, 0, 2)
    assert rejects(result) == [
        (3, "price", "unparseable price 'twelve'"),
        (5, "external_id", "missing external_id"),
    ]
    stored = conn.execute(
        "SELECT external_id, title, brand, price::text FROM prodmatch.products ORDER BY external_id"
    ).fetchall()
    assert stored == [(f"SKU-{i}", f"product {i}", "Brand", f"{i}.50") for i in (1, 2, 3)]
    # The statement trigger ran for the COPY: every product waits for the registered model.
    pending = conn.execute(
        "SELECT count(*) FROM prodmatch.embeddings WHERE model_id = %s AND status = 'pending'",
        (clip_model.id,),
    ).fetchone()[0]
    assert pending == 3
    run = conn.execute("SELECT inserted, updated, unchanged, rejected FROM prodmatch.ingest_runs").fetchone()
    assert run == (3, 0, 0, 2)


def test_a_second_load_of_the_catalogue_takes_the_upsert(conn, tmp_path, monkeypatch):
    ingest_file(conn, write(tmp_path / "first.csv", GOOD[:3]), "shop")
    monkeypatch.setattr(load, "_upsert", no_upsert)
    with pytest.raises(AssertionError, match="must not go through"):
        ingest_file(conn, write(tmp_path / "second.csv", GOOD), "shop")


@pytest.mark.parametrize("held", [1, load.MAX_HELD_REJECTS])
def test_duplicate_ids_or_many_rejects_fall_back_to_the_general_path(conn, tmp_path, monkeypatch, held):
    monkeypatch.setattr(load, "MAX_HELD_REJECTS", held)
    lines = [GOOD[0], GOOD[1], "SKU-1,again,Brand,2", "SKU-9,x,Brand,-", "SKU-8,y,Brand,?", GOOD[2]]
    result = ingest_file(conn, write(tmp_path / "dup.csv", lines), "shop")

    assert (result.rows, result.inserted, result.rejected) == (6, 3, 3)
    assert [(line, field) for line, field, _ in rejects(result)] == [
        (4, "external_id"),
        (5, "price"),
        (6, "price"),
    ]
    assert "first seen on line 2" in result.rejects[0].reason
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM prodmatch.ingest_rejects").fetchone()[0] == 3


def test_a_failed_first_load_leaves_nothing_and_a_rerun_loads_everything(conn, tmp_path):
    cut = write(tmp_path / "cut.csv", [*GOOD, "SKU-99,cut"], final_newline=False)
    with pytest.raises(IngestError, match="cut off"):
        ingest_file(conn, cut, "shop")
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 0

    result = ingest_file(conn, write(tmp_path / "whole.csv", GOOD), "shop")
    assert (result.inserted, result.rejected) == (5, 0)
    again = ingest_file(conn, write(tmp_path / "whole.csv", GOOD), "shop")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)


def test_strict_first_load_with_a_bad_row_loads_nothing(conn, tmp_path):
    with pytest.raises(IngestError, match="--strict loaded nothing"):
        ingest_file(
            conn, write(tmp_path / "bad.csv", [GOOD[0], "SKU-2,x,B,nope"]), "shop", IngestOptions(strict=True)
        )
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM prodmatch.products").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM prodmatch.ingest_rejects").fetchone()[0] == 0
