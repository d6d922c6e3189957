"""The built-in matcher: shipped in the package as data, listed as `builtin`, used by `link` with no flag."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from prodmatch import match
from prodmatch.cli import main
from prodmatch.demo.catalogues import generate
from prodmatch.errors import ConfigError
from prodmatch.ingest.load import ingest_file
from prodmatch.match.explain import explain_pair
from prodmatch.match.scoring import Matcher
from prodmatch.match.signals.features import FeatureMatrix, with_context
from prodmatch.match.signals.ranks import rank_signals
from prodmatch.quality.builtin import (
    BUILTIN_FILE,
    LabelledPairs,
    builtin_record,
    is_neural,
    signal_family,
    train_builtin,
    with_absent_twins,
    with_signal_dropout,
)
from prodmatch.quality.matchers import evaluate_matcher
from prodmatch.store.matchers import drop_matcher, get_matcher, list_matchers


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(BUILTIN_FILE.read_text(encoding="utf-8"))


@pytest.fixture
def demo(conn, tmp_path):
    """The demo's shop and competitor catalogues (no model, no label) and their gold pairs."""
    files = generate(tmp_path / "demo", 60, seed=3, image_size=32)
    ingest_file(conn, files.shop, files.shop_catalog)
    ingest_file(conn, files.competitor, files.competitor_catalog)
    conn.commit()
    return files


def _gold(conn, files) -> set[tuple[int, int]]:
    ids = dict(conn.execute("SELECT catalog_id::text || ':' || external_id, id FROM prodmatch.products"))
    shop = conn.execute(
        "SELECT id FROM prodmatch.catalogs WHERE name = %s", (files.shop_catalog,)
    ).fetchone()[0]
    rival = conn.execute(
        "SELECT id FROM prodmatch.catalogs WHERE name = %s", (files.competitor_catalog,)
    ).fetchone()[0]
    with open(files.gold, encoding="utf-8") as f:
        return {
            (ids[f"{shop}:{row['source_id']}"], ids[f"{rival}:{row['target_id']}"])
            for row in csv.DictReader(f)
            if row["label"] == "1"
        }


def test_the_packaged_matcher_is_plain_data_with_its_provenance(record):
    matcher = Matcher.from_json(record["definition"])
    assert matcher.feature_names == tuple(record["features"])
    assert not [name for name in matcher.feature_names if is_neural(name)]  # no neural model needed
    assert 0.0 < matcher.threshold < 1.0
    trained_on = record["trained_on"]
    assert trained_on["script"] == "benchmarks/builtin_matcher.py"
    datasets = {d["dataset"] for d in trained_on["datasets"]}
    assert {"walmart-amazon-dirty", "wdc-products-80cc"} <= datasets
    for dataset in trained_on["datasets"]:
        assert dataset["positives"] > 0 and all(len(f["sha256"]) == 64 for f in dataset["files"])


def test_it_is_listed_as_builtin_and_cannot_be_dropped(conn, settings):
    assert "builtin" in [row.name for row in list_matchers(conn)]
    conn.commit()
    result = CliRunner().invoke(main, ["--database-url", settings.database_url, "matcher", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert "builtin" in {row["name"] for row in json.loads(result.stdout)}
    with pytest.raises(ConfigError, match="ships with prodmatch"):
        drop_matcher(conn, "builtin")


def test_a_stale_stored_copy_is_replaced_by_the_packaged_one(conn, record):
    get_matcher(conn, "builtin")
    conn.execute(
        'UPDATE prodmatch.matchers SET threshold = 0.01, trained_on = \'{"definition_sha256": "old"}\''
        " WHERE name = 'builtin'"
    )
    row = get_matcher(conn, "builtin")
    assert row.threshold == pytest.approx(record["threshold"])
    assert row.trained_on["definition_sha256"] == record["trained_on"]["definition_sha256"]


def test_link_with_no_flag_uses_it_and_finds_the_twins_with_no_label(conn, demo):
    result = match.link(conn, demo.shop_catalog, demo.competitor_catalog)
    gold = _gold(conn, demo)
    rows = conn.execute(
        "SELECT source_product_id, target_product_id, match_probability, accepted, matcher"
        " FROM prodmatch.matches_v WHERE run_id = %s",
        (result.run_id,),
    ).fetchall()
    assert {r[4] for r in rows} == {"builtin"}
    assert all(0.0 <= r[2] <= 1.0 for r in rows)
    accepted = {(r[0], r[1]) for r in rows if r[3]}
    true = len(accepted & gold)
    precision, recall = true / max(len(accepted), 1), true / len(gold)
    # the demo's decoys are colour and size variants of each product: the trained matcher learns them, the
    # built-in one (no label) still keeps most of them out
    assert precision >= 0.6 and recall >= 0.8, (precision, recall, len(gold))
    assert result.notes == ()  # nearly every shop product has its twin there: no warning of lookalikes


def test_flags_that_name_a_space_keep_the_cosine_link(conn, demo):
    result = match.link(conn, demo.shop_catalog, demo.competitor_catalog, space="lexical", threshold=0.3)
    assert result.mode == "exact"
    assert (
        conn.execute(
            "SELECT count(*) FROM prodmatch.matches_v WHERE run_id = %s AND matcher IS NOT NULL",
            (result.run_id,),
        ).fetchone()[0]
        == 0
    )


def test_eval_and_explain_read_it_like_any_stored_matcher(conn, demo):
    judged = evaluate_matcher(conn, demo.gold, "builtin", demo.shop_catalog, demo.competitor_catalog)
    assert {r.mode for r in judged.rows if r.name == "matcher"} == {"all", "top1", "1:1", "clusters"}
    assert max(r.f1 for r in judged.rows if r.name == "matcher") > 0.6
    first = (
        "SELECT p.external_id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
        " WHERE c.name = %s ORDER BY p.id LIMIT 1"
    )
    shop_id = conn.execute(first, (demo.shop_catalog,)).fetchone()[0]
    rival_id = conn.execute(first, (demo.competitor_catalog,)).fetchone()[0]
    explained = explain_pair(
        conn, f"{demo.shop_catalog}:{shop_id}", f"{demo.competitor_catalog}:{rival_id}", matcher="builtin"
    )
    assert 0.0 <= explained.to_dict()["probability"] <= 1.0


def test_dedupe_with_no_threshold_clusters_on_the_same_evidence_as_link(conn, demo):
    result = match.dedupe(conn, demo.shop_catalog)
    assert "matcher 'builtin'" in result.method
    with open(demo.shop_duplicates, encoding="utf-8") as f:
        duplicates = [(row["id_a"], row["id_b"]) for row in csv.DictReader(f)]
    members = conn.execute(
        "SELECT cluster_id, external_id FROM prodmatch.duplicates_v WHERE run_id = %s", (result.run_id,)
    ).fetchall()
    cluster_of = {external_id: cluster for cluster, external_id in members}
    found = sum(1 for a, b in duplicates if a in cluster_of and cluster_of.get(a) == cluster_of.get(b))
    assert duplicates and found >= 0.5 * len(duplicates), (found, len(duplicates))
    sizes: dict[int, int] = {}
    for cluster in cluster_of.values():
        sizes[cluster] = sizes.get(cluster, 0) + 1
    together = sum(n * (n - 1) // 2 for n in sizes.values())
    assert found >= 0.5 * together, (found, together)  # variants (colour, size, model number) stay apart
    assert not conn.execute(
        "SELECT 1 FROM prodmatch.duplicates_v WHERE run_id = %s GROUP BY cluster_id, external_id"
        " HAVING count(*) > 1",
        (result.run_id,),
    ).fetchall()  # a product is in one cluster once


def test_training_pools_datasets_drops_neural_features_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)

    def part(name: str, n: int, extra: str) -> LabelledPairs:
        labels = (rng.random(n) < 0.3).astype(np.int64)
        names = ("sim:lexical", "sim:fused", "codes_agree", extra)
        values = np.column_stack(
            [labels * 0.5 + rng.random(n) * 0.5, rng.random(n), labels.astype(float), rng.random(n)]
        ).astype(np.float32)
        return LabelledPairs(name, FeatureMatrix(names, values), labels, np.arange(n) // 3)

    matcher, counts = train_builtin(
        [part("one", 300, "price_log_ratio"), part("two", 240, "attribute_agreement")]
    )
    assert "sim:fused" not in matcher.feature_names
    assert {"price_log_ratio", "attribute_agreement", "sim:lexical"} <= set(matcher.feature_names)
    assert [c["pairs"] for c in counts] == [300, 240]  # each set's own pairs, not the signal-dropout copies
    assert matcher.metrics["n_pairs"] == 2 * (300 + 240)  # ... which it was trained on as well
    record = builtin_record(matcher, k=10, datasets=counts, script="test", training={"signal_dropout": 0.2})
    assert record["trained_on"]["training"] == {"signal_dropout": 0.2}
    again = Matcher.from_json(json.loads(json.dumps(record))["definition"])
    probe = FeatureMatrix(
        matcher.feature_names, rng.random((20, len(matcher.feature_names))).astype(np.float32)
    )
    assert np.allclose(again.predict_proba(probe), matcher.predict_proba(probe))
    assert record["trained_on"]["k"] == 10 and len(record["trained_on"]["definition_sha256"]) == 64


def _ranked(sources, targets, lexical, codes, overlap) -> FeatureMatrix:
    """Features of candidate pairs as link computes them: ranks per candidate source, then context margins."""
    columns, names = [lexical, overlap], ["sim:lexical", "title_jaccard"]
    for space, scores in (("lexical", lexical), ("codes", codes)):
        proposed = ~np.isnan(scores)
        ranks = rank_signals(
            sources[proposed],
            targets[proposed],
            scores[proposed],
            pair_source_ids=sources,
            pair_target_ids=targets,
        )
        columns += [ranks.rank, ranks.margin, ranks.reverse_rank, ranks.reverse_margin]
        names += [f"rank:{space}", f"margin:{space}", f"reverse_rank:{space}", f"reverse_margin:{space}"]
    matrix = FeatureMatrix(tuple(names), np.column_stack(columns).astype(np.float32))
    return with_context(matrix, sources, targets, ("title_jaccard",))


def test_absent_twin_copies_rank_the_candidates_left_as_link_would_rank_them():
    # source 1: its twin (target 10) leads both candidate sources; source 2 has no twin
    sources = np.array([1, 1, 1, 1, 2, 2, 2])
    targets = np.array([10, 11, 12, 13, 11, 12, 14])
    lexical = np.array([0.9, 0.7, 0.5, 0.4, 0.6, 0.3, 0.2])
    codes = np.array([0.8, np.nan, 0.6, 0.1, np.nan, 0.5, np.nan])
    overlap = np.array([0.8, 0.6, 0.3, 0.1, 0.5, 0.4, 0.1])
    labels = np.array([1, 0, 0, 0, 0, 0, 0])
    part = LabelledPairs("toy", _ranked(sources, targets, lexical, codes, overlap), labels, sources)

    out = with_absent_twins(part, 1.0, seed=0)

    assert len(out.labels) == 7 + 3  # one copy: source 1 without its twin
    copy = out.features.rows(np.arange(7, 10))
    assert list(out.labels[7:]) == [0, 0, 0] and list(out.sources[7:]) == [1, 1, 1]
    left = np.arange(1, 7)  # what link would see had target 10 not been in the catalogue
    expected = _ranked(sources[left], targets[left], lexical[left], codes[left], overlap[left]).rows(
        np.arange(3)
    )
    for name in (
        *(
            f"{kind}:{space}"
            for kind in ("rank", "margin", "reverse_rank", "reverse_margin")
            for space in ("lexical", "codes")
        ),
        "context_margin:title_jaccard",
        "context_reverse_margin:title_jaccard",
    ):
        assert np.allclose(copy.column(name), expected.column(name), equal_nan=True), name
    assert copy.column("rank:lexical").tolist() == [1, 2, 3]  # was 2, 3, 4 beside the twin
    assert np.allclose(copy.column("margin:lexical"), [0.2, -0.2, -0.3])
    # the originals are untouched, and a share of 0 adds nothing
    assert np.array_equal(out.features.values[:7], part.features.values, equal_nan=True)
    assert len(with_absent_twins(part, 0.0, seed=0).labels) == 7
    with pytest.raises(ValueError, match="between 0 and 1, not 1.5"):
        with_absent_twins(part, 1.5, seed=0)


def _cameras(path, codes: list[int]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i, code in enumerate(codes):
            title = f"Lumix compact digital camera DMC-TZ{code} 20x zoom black"
            f.write(
                json.dumps({"id": f"p{i}", "title": title, "brand": "Panasonic", "price": 200 + i}) + "\n"
            )


def test_link_says_when_many_best_candidates_have_clashing_codes(conn, tmp_path):
    # the shop's 30 cameras; one rival sells 6 of them and lookalikes (another model number) of the rest, the
    # other sells all 30
    _cameras(tmp_path / "shop.jsonl", [100 + i for i in range(30)])
    _cameras(tmp_path / "few.jsonl", [100 + i if i < 6 else 500 + i for i in range(30)])
    _cameras(tmp_path / "all.jsonl", [100 + i for i in range(30)])
    for name in ("shop", "few", "all"):
        ingest_file(conn, tmp_path / f"{name}.jsonl", name)
    conn.commit()

    few = match.link(conn, "shop", "few")
    every = match.link(conn, "shop", "all")

    assert every.notes == ()
    assert len(few.notes) == 1, few.notes
    assert few.notes[0].startswith(
        "24 of 30 products' best candidates in few have a product code that clashes"
    )
    assert "prodmatch review" in few.notes[0] and "note: 24 of 30" in few.to_text()
    accepted = conn.execute(
        "SELECT count(*) FROM prodmatch.matches_v WHERE run_id = %s AND accepted"
        " AND (signals ->> 'codes_conflict')::float > 0",
        (few.run_id,),
    ).fetchone()[0]
    assert f"({accepted:,} accepted pairs have clashing codes)" in few.notes[0]


def test_signal_families_group_what_a_catalogue_lacks_together():
    families = {
        name: signal_family(name)
        for name in (
            "sim:lexical",
            "rank:lexical",
            "reverse_margin:lexical",
            "rank:codes",
            "codes_agree",
            "codes_conflict",
            "code_in_other_text",
            "context_margin:code_in_other_text",
            "brand_equal",
            "brand_in_other_title",
            "title_jaccard",
            "title_length_ratio",
            "context_reverse_margin:title_jaccard",
            "numbers_agree",
            "plain_number_jaccard",
            "context_margin:numbers_agree",
            "price_log_ratio",
            "attribute_agreement",
            "category_jaccard",
            "colour_conflict",
            "model_token_containment",
        )
    }
    assert {n for n, f in families.items() if f == "lexical"} == {
        "sim:lexical",
        "rank:lexical",
        "reverse_margin:lexical",
    }
    assert {n for n, f in families.items() if f == "codes"} == {
        "rank:codes",
        "codes_agree",
        "codes_conflict",
        "code_in_other_text",
        "context_margin:code_in_other_text",
    }
    assert {n for n, f in families.items() if f == "numbers"} == {
        "numbers_agree",
        "plain_number_jaccard",
        "context_margin:numbers_agree",
    }
    assert families["brand_in_other_title"] == families["brand_equal"] == "brand"
    assert families["title_length_ratio"] == families["context_reverse_margin:title_jaccard"] == "title"
    assert len({families[n] for n in ("price_log_ratio", "attribute_agreement", "category_jaccard")}) == 3


def test_signal_dropout_copies_the_pairs_with_whole_families_missing():
    rng = np.random.default_rng(1)
    names = ("sim:lexical", "rank:lexical", "codes_agree", "rank:codes", "price_log_ratio")
    n = 4000
    values = rng.random((n, len(names))).astype(np.float32)
    values[:10, 4] = np.nan  # already missing: stays missing
    labels = (rng.random(n) < 0.2).astype(np.int64)
    part = LabelledPairs("one", FeatureMatrix(names, values), labels, np.arange(n) // 4)
    out = with_signal_dropout(part, 0.2, (0, 0))
    assert len(out.labels) == 2 * n
    assert np.array_equal(out.features.values[:n], values, equal_nan=True)  # the originals untouched
    assert np.array_equal(out.labels, np.concatenate([labels, labels]))
    assert np.array_equal(out.sources, np.concatenate([part.sources, part.sources]))  # one group per source
    copy = out.features.values[n:]
    lost = np.isnan(copy) & ~np.isnan(values)
    # a family is lost whole: both lexical columns together, both code columns together
    assert np.array_equal(lost[:, 0], lost[:, 1]) and np.array_equal(lost[:, 2], lost[:, 3])
    for j in (0, 2, 4):
        assert 0.17 < lost[10:, j].mean() < 0.23, (names[j], lost[:, j].mean())
    assert not np.array_equal(lost[:, 0], lost[:, 2])  # families independently
    kept = ~np.isnan(copy)
    assert np.array_equal(copy[kept], values[kept])  # what is not lost is the original value
    again = with_signal_dropout(part, 0.2, (0, 0))
    assert np.array_equal(again.features.values, out.features.values, equal_nan=True)  # seeded
    assert with_signal_dropout(part, 0.0, (0, 0)) is part
    with pytest.raises(ValueError, match="between 0 and 1"):
        with_signal_dropout(part, 1.5, 0)
