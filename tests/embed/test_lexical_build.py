"""A full build of the lexical space: what it stores, the binary form it writes, the steps it reports.

Real PostgreSQL; a few hundred generated products (benchmarks/lexical_build.py measures the same at 100,000).
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from prodmatch import store
from prodmatch.config import IndexBuild
from prodmatch.embed.lexical import LexicalEncoder, document_frequencies, idf_weights, weigh_many
from prodmatch.embed.lexical_refresh import (
    lexical_index_build,
    parse_sparse_text,
    refresh_lexical,
    sparse_binary,
    sparse_text,
)
from prodmatch.store.schema import LEXICAL_DIMENSIONS, LEXICAL_HNSW

PRODUCTS = [
    {"title": f"{kind} {code}{n} {n % 7 + 1}W", "brand": brand}
    for n, (kind, code, brand) in enumerate(
        [("LED bulb", "PS-LX", "Philips"), ("Turntable", "AT-LP", "Sony"), ("Чайник", "HD", "Филипс")] * 60
    )
]


@pytest.fixture
def catalogue(conn):
    catalog_id = conn.execute(
        "INSERT INTO prodmatch.catalogs (name) VALUES ('shop') RETURNING id"
    ).fetchone()[0]
    with conn.cursor().copy(
        "COPY prodmatch.products (catalog_id, external_id, title, brand) FROM STDIN"
    ) as copy:
        for i, product in enumerate(PRODUCTS):
            copy.write_row((catalog_id, f"p{i}", product["title"], product["brand"]))
    conn.commit()
    return catalog_id


@pytest.mark.parametrize(
    ("indices", "values"),
    [
        ([0, 5, LEXICAL_DIMENSIONS - 1], [0.25, -1.5, 1e-7]),
        ([123456], [3.0]),
        ([], []),
    ],
)
def test_binary_sparse_vectors_read_back_as_written(conn, indices, values):
    indices, values = np.array(indices, np.int32), np.array(values, np.float32)
    conn.execute(f"CREATE TEMP TABLE v (binary_form sparsevec({LEXICAL_DIMENSIONS}), text_form text)")
    with conn.cursor().copy("COPY v (binary_form, text_form) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["bytea", "text"])
        copy.write_row((sparse_binary(indices, values), sparse_text(indices, values)))
    binary_form, same = conn.execute(
        "SELECT binary_form::text, binary_form = text_form::sparsevec FROM v"
    ).fetchone()
    read_indices, read_values = parse_sparse_text(binary_form)
    assert read_indices.tolist() == indices.tolist()
    assert np.allclose(read_values, values, rtol=1e-6)
    assert same


def test_binary_sparse_vector_with_unsorted_indices_is_refused(conn):
    conn.execute("CREATE TEMP TABLE v (vector sparsevec)")
    unsorted = sparse_binary(np.array([5, 2], np.int32), np.array([1.0, 1.0], np.float32))
    with (
        pytest.raises(psycopg.errors.DataException),
        conn.cursor().copy("COPY v (vector) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["bytea"])
        copy.write_row((unsorted,))


def test_first_build_stores_the_weighted_vectors_and_reports_each_step(conn, catalogue):
    built = refresh_lexical(conn)
    assert built.encoded == built.documents == len(PRODUCTS)
    assert list(built.steps) == ["read", "encode", "weigh", "write", "index"]
    assert all(seconds >= 0 for seconds in built.steps.values())
    assert "index" in built.to_text()

    raw = LexicalEncoder(dimensions=LEXICAL_DIMENSIONS).encode_many(PRODUCTS)
    expected = weigh_many(raw, idf_weights(document_frequencies(raw), len(raw)))
    rows = conn.execute(
        "SELECT p.external_id, l.terms::text, l.vector::text FROM prodmatch.lexical l"
        " JOIN prodmatch.products p ON p.id = l.product_id"
    ).fetchall()
    assert len(rows) == len(PRODUCTS)
    for external_id, terms, vector in rows:
        k = int(external_id[1:])
        stored_terms, stored_vector = parse_sparse_text(terms), parse_sparse_text(vector)
        assert stored_terms[0].tolist() == raw[k][0].tolist()
        assert np.allclose(stored_terms[1], raw[k][1], rtol=1e-6)
        assert stored_vector[0].tolist() == expected[k][0].tolist()
        assert np.allclose(stored_vector[1], expected[k][1], rtol=1e-6)


def test_an_incremental_refresh_after_a_build_reports_no_steps(conn, catalogue):
    refresh_lexical(conn)
    conn.commit()
    conn.execute("UPDATE prodmatch.products SET title = 'LED bulb PS-LX999 9W' WHERE external_id = 'p0'")
    done = refresh_lexical(conn)
    assert (done.encoded, done.reweighed, done.steps) == (1, 0, {})


def _index_options(conn) -> set[str]:
    row = conn.execute(
        "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'prodmatch' AND c.relname = 'lexical_vector_hnsw'"
    ).fetchone()
    return set(row[0] or [])


def test_a_rebuilt_lexical_index_keeps_the_options_of_the_migrations(conn, catalogue):
    assert _index_options(conn) == {"m=12", "ef_construction=24"}  # as migration 0009 left it
    refresh_lexical(conn)
    conn.commit()
    assert _index_options(conn) == {f"{name}={value}" for name, value in LEXICAL_HNSW.items()}


def test_migration_0009_sets_and_resets_the_lexical_hnsw_options(empty_settings):
    assert store.upgrade(empty_settings, "0009") == "0009"
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        assert _index_options(conn) == {"m=12", "ef_construction=24"}
    assert store.downgrade(empty_settings, "0008") == "0008"
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        assert _index_options(conn) == set()
    assert store.upgrade(empty_settings) == store.head_revision()


@pytest.mark.parametrize(
    ("ceiling", "documents", "nonzeros", "expected"),
    [
        ("16GB", 100_000, 9_200_000, "336MB"),  # the graph's size, not a quarter of the machine
        ("4 GB", 100, 9_200, "64MB"),  # never under 64 MB
        ("200MB", 100_000, 9_200_000, "200MB"),  # never above the configured memory
        ("1MB", 3000, 300_000, "1MB"),
    ],
)
def test_the_lexical_index_build_asks_only_the_memory_its_graph_needs(ceiling, documents, nonzeros, expected):
    build = lexical_index_build(IndexBuild(ceiling, 3), documents, nonzeros)
    assert (build.maintenance_work_mem, build.workers) == (expected, 3)


def test_a_rebuild_with_a_large_memory_ceiling_still_builds_its_graph_in_memory(conn, catalogue):
    notices = []
    conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    refresh_lexical(conn, build=IndexBuild("8GB", 0))
    assert not any("no longer fits" in message for message in notices), notices


def test_a_refresh_told_which_products_changed_encodes_only_those(conn, catalogue):
    refresh_lexical(conn)
    conn.commit()
    first, second = (
        r[0] for r in conn.execute("SELECT id FROM prodmatch.products ORDER BY id LIMIT 2").fetchall()
    )
    conn.execute(
        "UPDATE prodmatch.products SET title = title || ' 2 pack' WHERE id = ANY(%s)", ([first, second],)
    )
    conn.commit()
    told = refresh_lexical(conn, product_ids=[first])  # a watcher that saw only `first` change
    conn.commit()
    assert told.encoded == 1
    stale = {
        r[0]
        for r in conn.execute(
            "SELECT p.id FROM prodmatch.products p JOIN prodmatch.lexical l ON l.product_id = p.id"
            " WHERE l.content_hash <> p.content_hash"
        )
    }
    assert stale == {second}
    assert refresh_lexical(conn).encoded == 1  # an unrestricted refresh finds the other one


def test_migration_0013_makes_every_lexical_row_re_encode_with_attribute_values(empty_settings):
    """Rows encoded before attribute values were terms are stale after the upgrade, and the next refresh re-encodes
    them, with the attribute terms (a product's raw terms grow by its attributes' `a` terms)."""
    assert store.upgrade(empty_settings, "0012") == "0012"
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        catalog = conn.execute(
            "INSERT INTO prodmatch.catalogs (name) VALUES ('shop') RETURNING id"
        ).fetchone()[0]
        for i in range(30):
            conn.execute(
                "INSERT INTO prodmatch.products (catalog_id, external_id, title, attributes)"
                " VALUES (%s, %s, %s, %s::jsonb)",
                (catalog, f"p{i}", f"shoe {i}", '{"upper material": "leather", "heel": "block"}'),
            )
        assert refresh_lexical(conn).encoded == 30
        assert (
            conn.execute(
                "SELECT count(*) FROM prodmatch.lexical WHERE content_hash = "
                "(SELECT content_hash FROM prodmatch.products WHERE id = product_id)"
            ).fetchone()[0]
            == 30
        )
    assert store.upgrade(empty_settings) == store.head_revision()
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        stale = conn.execute(
            "SELECT count(*) FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
            " WHERE l.content_hash <> p.content_hash"
        ).fetchone()[0]
        assert stale == 30
        assert refresh_lexical(conn).encoded == 30
        terms = conn.execute(
            "SELECT l.terms::text FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
            " WHERE p.external_id = 'p0'"
        ).fetchone()[0]
    encoder = LexicalEncoder(dimensions=LEXICAL_DIMENSIONS)
    expected = encoder.terms(
        {"title": "shoe 0", "attributes": {"upper material": "leather", "heel": "block"}}
    )
    assert terms.count(":") == len(expected)  # sparsevec text: one "index:value" per stored term
    assert len(expected) == len(encoder.terms({"title": "shoe 0"})) + 2  # the two attribute values are terms


def test_migration_0015_re_encodes_the_rows_whose_units_it_reads_anew(empty_settings):
    """Rows whose text has a number before a unit spelling added in 0015 are stale after the upgrade, the others
    are kept and only the stale ones are re-encoded, with the terms of "500ml" and "27in"; so is a row with a
    Korean colour key, which gained its role in 0015."""
    assert store.upgrade(empty_settings, "0014") == "0014"
    titles = {"jp": "シャンプー 500ミリリットル", "de": "Monitor 27 Zoll", "cn": "男鞋42码"}
    titles |= {f"plain{i}": f"shoe {i} 500 ml" for i in range(20)}  # a few stale rows: re-encoded alone
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        catalog = _shop_titled(conn, titles)
        conn.execute(  # a Korean colour key: read by the lexical space from 0015 on
            "INSERT INTO prodmatch.products (catalog_id, external_id, title, attributes)"
            ' VALUES (%s, \'kr\', \'운동화\', \'{"색상": "검정", "비고": "없음"}\'::jsonb)',
            (catalog,),
        )
        assert refresh_lexical(conn).encoded == len(titles) + 1
    assert store.upgrade(empty_settings, "0015") == "0015"
    with psycopg.connect(empty_settings.database_url, autocommit=True) as conn:
        stale = _stale_ids(conn)
        assert stale == {"jp", "de", "kr"}
        assert refresh_lexical(conn).encoded == 3
        terms = dict(
            conn.execute(
                "SELECT p.external_id, l.terms::text FROM prodmatch.lexical l"
                " JOIN prodmatch.products p ON p.id = l.product_id"
            ).fetchall()
        )
    encoder = LexicalEncoder(dimensions=LEXICAL_DIMENSIONS)
    for external_id, same_as in (("jp", "シャンプー 500ml"), ("de", "Monitor 27in")):
        assert terms[external_id].count(":") == len(encoder.terms({"title": same_as}))
        assert encoder.terms({"title": titles[external_id]}) == encoder.terms({"title": same_as})
    korean = {"title": "운동화", "attributes": {"색상": "검정", "비고": "없음"}}
    assert terms["kr"].count(":") == len(encoder.terms(korean)) > len(encoder.terms({"title": "운동화"}))


@pytest.mark.parametrize(
    ("before", "after", "titles", "same_as"),
    [
        # 0016: the title signals' unit words in the lexical space too ("10 Stück" -> "10pcs")
        (
            "0015",
            "0016",
            {
                "de": "Schrauben 10 Stück",
                "ru": "Винты 10 шт",
                "hub": "USB hub 4-port",
                "lb": "Dumbbell 5 lbs",
            },
            {"de": "Schrauben 10 pcs", "ru": "Винты 10 pcs", "hub": "USB hub 4 ports", "lb": "Dumbbell 5 lb"},
        ),
        # 0017: text without web markup ("Black &amp; Decker" = "Black & Decker"); "<->" is no tag, "&T" no entity
        (
            "0016",
            "0017",
            {
                "amp": "Black &amp; Decker drill 18&nbsp;V",
                "quote": "Monitor 27&#8221; IPS",
                "tag": "<b>Kettle</b> 1.7 l",
                "arrow": "USB <-> HDMI cable",
                "and": "AT&T phone",
            },
            {"amp": "Black & Decker drill 18 V", "quote": 'Monitor 27" IPS', "tag": "Kettle 1.7 l"},
        ),
        # 0018: a size before its number reads as "42码" does; a one-digit size is no European size
        (
            "0017",
            "0018",
            {
                "en": "Sneaker Size 42",
                "ru": "Кроссовки размер 44",
                "cn": "运动鞋 尺码：40",
                "us": "Sneaker size 9",
            },
            {"en": "Sneaker 42码", "ru": "Кроссовки 44码", "cn": "运动鞋 40码"},
        ),
    ],
)
def test_a_migration_re_encodes_only_the_rows_the_lexical_space_now_reads_otherwise(
    empty_settings, before, after, titles, same_as
):
    """Rows whose text the encoder reads otherwise from `after` on are stale after the upgrade, and re-encode
    to the terms of the text they now stand for (`same_as`); the other rows are kept."""
    titles = titles | {f"plain{i}": f"shoe {i} 500 ml" for i in range(20)}  # read as before: kept
    stale, encoded, stored = _upgraded(empty_settings, before, after, titles)
    assert stale == set(same_as) and encoded == len(same_as)
    encoder = LexicalEncoder(dimensions=LEXICAL_DIMENSIONS)
    for external_id, text in same_as.items():
        assert stored[external_id].count(":") == len(encoder.terms({"title": text}))
        assert encoder.terms({"title": titles[external_id]}) == encoder.terms({"title": text})


def test_migration_0019_re_encodes_the_rows_with_a_german_sch(empty_settings):
    """Rows with "sch" are stale after 0019 and re-encode with "sh" n-grams: a Russian shop's `Бош` meets the
    stored `Bosch` once they are; the other rows (Cyrillic `ш` was "sh" already) are kept."""
    titles = {"de": "Bosch GSB 13 RE", "ru": "Бош GSB 13 RE"} | {
        f"plain{i}": f"Makita DF{i}" for i in range(20)
    }
    stale, encoded, stored = _upgraded(empty_settings, "0018", "0019", titles)
    assert stale == {"de"} and encoded == 1
    encoder = LexicalEncoder(dimensions=LEXICAL_DIMENSIONS)
    assert stored["de"].count(":") == len(encoder.terms({"title": titles["de"]}))
    shared = set(encoder.terms({"title": "Bosch"})) & set(encoder.terms({"title": "Бош"}))
    assert len(shared) >= 3  # "<bo", "bos", "osh", "sh>" ...


def _upgraded(
    settings, before: str, after: str, titles: dict[str, str]
) -> tuple[set[str], int, dict[str, str]]:
    """A shop of `titles` encoded at revision `before`, then upgraded to `after` and refreshed: (the external ids
    the upgrade made stale, how many rows the refresh encoded, each product's stored terms)."""
    assert store.upgrade(settings, before) == before
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        _shop_titled(conn, titles)
        assert refresh_lexical(conn).encoded == len(titles)
    assert store.upgrade(settings, after) == after
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        stale = _stale_ids(conn)
        encoded = refresh_lexical(conn).encoded
        stored = dict(
            conn.execute(
                "SELECT p.external_id, l.terms::text FROM prodmatch.lexical l"
                " JOIN prodmatch.products p ON p.id = l.product_id"
            ).fetchall()
        )
    return stale, encoded, stored


def _shop_titled(conn, titles: dict[str, str]) -> int:
    """A catalogue 'shop' with one product per (external id, title); its id."""
    catalog = conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES ('shop') RETURNING id").fetchone()[0]
    for external_id, title in titles.items():
        conn.execute(
            "INSERT INTO prodmatch.products (catalog_id, external_id, title) VALUES (%s, %s, %s)",
            (catalog, external_id, title),
        )
    return catalog


def _stale_ids(conn) -> set[str]:
    """External ids of the products whose lexical row is stale (its content hash is not the product's)."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT p.external_id FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
            " WHERE l.content_hash <> p.content_hash"
        )
    }
