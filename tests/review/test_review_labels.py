"""Labels are data: one current label per pair with history, undo per person, concurrent answers, the labels_v
view, and export/import in the gold CSV format that evaluation reads."""

from __future__ import annotations

import threading

import psycopg
import pytest
from review_world import tiny_run

from prodmatch import store as db
from prodmatch.errors import ConfigError
from prodmatch.quality.gold import read_gold
from prodmatch.review import export_labels, gold_rows, import_labels, label_counts, record_label, undo_last


def _rows(conn, source, target):
    return conn.execute(
        "SELECT label, labelled_by, is_current FROM prodmatch.labels"
        " WHERE source_product_id = %s AND target_product_id = %s ORDER BY id",
        (source, target),
    ).fetchall()


def test_a_new_answer_becomes_current_and_history_keeps_the_old_one(conn):
    ids = tiny_run(conn)
    s, t = ids["shop-0"], ids["rival-0"]
    record_label(conn, s, t, "unsure", "alice", ids["run"])
    record_label(conn, s, t, "match", "bob", ids["run"])
    assert _rows(conn, s, t) == [("unsure", "alice", False), ("match", "bob", True)]
    assert label_counts(conn, ids["run"]).to_dict() == {
        "labelled": 1,
        "matches": 1,
        "non_matches": 0,
        "unsure": 0,
    }
    with pytest.raises(
        psycopg.errors.UniqueViolation
    ):  # the index is the backstop for a direct second insert
        conn.execute(
            "INSERT INTO prodmatch.labels (source_product_id, target_product_id, label, labelled_by)"
            " VALUES (%s, %s, 'match', 'eve')",
            (s, t),
        )
    conn.rollback()


@pytest.mark.parametrize("label,who", [("same", "alice"), ("match", "")])
def test_bad_answers_are_refused(conn, label, who):
    ids = tiny_run(conn)
    with pytest.raises(ConfigError):
        record_label(conn, ids["shop-0"], ids["rival-0"], label, who)


def test_undo_takes_back_only_the_persons_latest_answer_and_restores_the_previous_one(conn):
    ids = tiny_run(conn)
    s, t = ids["shop-1"], ids["rival-1"]
    record_label(conn, s, t, "non-match", "alice")
    record_label(conn, ids["shop-2"], ids["rival-2"], "match", "alice")
    record_label(conn, s, t, "match", "bob")
    undone = undo_last(conn, "bob")
    assert (undone.source_product_id, undone.target_product_id, undone.label) == (s, t, "match")
    assert _rows(conn, s, t) == [("non-match", "alice", True)]
    assert undo_last(conn, "bob") is None
    assert undo_last(conn, "alice").label == "match"  # alice's latest was the other pair
    assert _rows(conn, ids["shop-2"], ids["rival-2"]) == []
    assert _rows(conn, s, t) == [("non-match", "alice", True)]


def test_concurrent_answers_to_one_pair_keep_the_last_and_history_keeps_both(settings, conn):
    ids = tiny_run(conn)
    s, t = ids["shop-3"], ids["rival-3"]
    first = db.connect(settings)
    second = db.connect(settings)
    try:
        record_label(conn, ids["shop-0"], ids["rival-1"], "unsure", "carol")  # unrelated pair, same table
        # The first writer answers but has not committed; the second must wait for it, then supersede it.
        first.execute("SELECT prodmatch.record_label(%s, %s, 'match', 'alice')", (s, t))
        done = threading.Event()

        def answer() -> None:
            record_label(second, s, t, "non-match", "bob")
            done.set()

        worker = threading.Thread(target=answer)
        worker.start()
        assert not done.wait(0.5), "the second answer did not wait for the first transaction"
        first.commit()
        worker.join(10)
        assert done.is_set()
    finally:
        first.close()
        second.close()
    assert _rows(conn, s, t) == [("match", "alice", False), ("non-match", "bob", True)]


def test_many_threads_answering_the_same_pairs_leave_one_current_label_each(settings, conn):
    ids = tiny_run(conn)
    pairs = [(ids[f"shop-{i}"], ids[f"rival-{i}"]) for i in range(2)]
    errors: list[BaseException] = []

    def labeller(name: str) -> None:
        try:
            with db.connection(settings) as own:
                for round_ in range(5):
                    for s, t in pairs:
                        record_label(own, s, t, ("match", "non-match")[round_ % 2], name)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=labeller, args=(f"user{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    for s, t in pairs:
        rows = _rows(conn, s, t)
        assert len(rows) == 20 and sum(current for *_, current in rows) == 1
        assert rows[-1][2] is True  # the last answer given is the current one


def test_labels_view_joins_metadata(conn):
    ids = tiny_run(conn)
    record_label(conn, ids["shop-0"], ids["rival-0"], "match", "alice", ids["run"])
    row = conn.execute(
        "SELECT source_catalog, source_external_id, source_title, target_catalog, target_external_id, label,"
        " run_id FROM prodmatch.labels_v"
    ).fetchone()
    assert row == ("shop", "shop-0", "Kettle shop 0", "rival", "rival-0", "match", ids["run"])


def test_deleting_a_run_keeps_its_labels(conn):
    ids = tiny_run(conn)
    record_label(conn, ids["shop-0"], ids["rival-0"], "match", "alice", ids["run"])
    conn.execute("DELETE FROM prodmatch.match_runs WHERE id = %s", (ids["run"],))
    assert conn.execute("SELECT run_id, is_current FROM prodmatch.labels").fetchall() == [(None, True)]


def test_export_writes_gold_that_read_gold_reads_and_import_reads_it_back(settings, conn, tmp_path):
    ids = tiny_run(conn)
    record_label(conn, ids["shop-0"], ids["rival-0"], "match", "alice")
    record_label(conn, ids["shop-0"], ids["rival-1"], "non-match", "alice")
    record_label(conn, ids["shop-1"], ids["rival-1"], "unsure", "alice")
    gold = tmp_path / "gold.csv"
    assert export_labels(conn, gold) == 2
    assert gold_rows(conn) == [
        ("shop", "shop-0", "rival", "rival-0", 1),
        ("shop", "shop-0", "rival", "rival-1", 0),
    ]
    pairs = read_gold(gold)
    assert [(p.source_catalog, p.source_id, p.target_catalog, p.target_id, p.label) for p in pairs] == [
        ("shop", "shop-0", "rival", "rival-0", 1),
        ("shop", "shop-0", "rival", "rival-1", 0),
    ]
    conn.execute("DELETE FROM prodmatch.labels")
    conn.commit()
    with gold.open("a") as f:
        f.write("shop,shop-9,rival,rival-0,1\nshop,shop-2,rival,rival-3,unsure\n")
    result = import_labels(conn, gold, labelled_by="importer")
    assert result.imported == 3
    assert result.unknown == [f"{gold}:4: unknown product shop:shop-9"]
    assert label_counts(conn).to_dict() == {"labelled": 3, "matches": 1, "non_matches": 1, "unsure": 1}


@pytest.mark.parametrize(
    "content,message",
    [
        ("source_catalog,source_id,target_catalog\nshop,a,rival\n", "missing column(s) target_id"),
        (
            "source_catalog,source_id,target_catalog,target_id,label\nshop,shop-0,rival,rival-0,2\n",
            ":2: label",
        ),
        ("source_catalog,source_id,target_catalog,target_id\nshop,,rival,rival-0\n", ":2: empty field"),
        ("source_catalog,source_id,target_catalog,target_id\nshop,shop-0,shop,shop-0\n", "against itself"),
    ],
)
def test_import_names_the_bad_line(conn, tmp_path, content, message):
    tiny_run(conn)
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_labels(conn, path)
    assert conn.execute("SELECT count(*) FROM prodmatch.labels").fetchone()[0] == 0
