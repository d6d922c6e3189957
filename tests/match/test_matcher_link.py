"""Match quality in the database: the lexical space, product codes, hybrid candidates, learned matchers.

Real PostgreSQL; no neural model unless a test registers the tiny random CLIP. Catalogues come from the demo
generator (noisy RU/EN titles, codes, price jitter, decoys) or are written inline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import INDEX_ONLY_PLANS, plan_with_indexes_only
from click.testing import CliRunner

from prodmatch import match
from prodmatch import store as store_api
from prodmatch.cli import main
from prodmatch.demo.catalogues import generate
from prodmatch.embed.lexical_refresh import refresh_lexical
from prodmatch.errors import ProdmatchError
from prodmatch.ingest.load import ingest_file
from prodmatch.match.explain import explain_pair
from prodmatch.match.link import load_matcher
from prodmatch.quality.matchers import evaluate_matcher, train_and_store


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def demo(conn, tmp_path):
    files = generate(tmp_path / "demo", 150, seed=3, image_size=32)
    ingest_file(conn, files.shop, "shop")
    ingest_file(conn, files.competitor, "competitor")
    conn.commit()
    return files


@pytest.fixture
def codes_catalogues(conn, tmp_path):
    """A shop and a competitor whose true pairs share a model code written differently."""
    _write(
        tmp_path / "a.csv",
        "id,title,brand,price,currency\n"
        "A1,Sony PS-LX350H turntable,Sony,199,EUR\n"
        "A2,Самсунг Galaxy A52 128GB,Самсунг,299,EUR\n"
        "A3,Philips kettle HD9350 1.7 l,Philips,49,EUR\n",
    )
    _write(
        tmp_path / "b.csv",
        "id,title,brand,price,currency\n"
        "B1,SONY pslx350h Turntable,SONY,205,EUR\n"
        "B2,Sony PS-LX300H turntable,Sony,149,EUR\n"
        "B3,Samsung Galaxy A52 128 GB,Samsung,289,EUR\n"
        "B4,Xiaomi Galaxy A52 128GB case,Xiaomi,9,EUR\n"
        "B5,Philips HD9350/90 kettle 1.7l,Philips,52,EUR\n",
    )
    ingest_file(conn, tmp_path / "a.csv", "a")
    ingest_file(conn, tmp_path / "b.csv", "b")
    conn.commit()
    return {"a": "a", "b": "b"}


def _pid(conn, catalog: str, external_id: str) -> int:
    return store_api.find_product(conn, catalog, external_id)


def test_lexical_similar_ranks_code_variants_and_transliterations_first(conn, codes_catalogues):
    refresh_lexical(conn)
    conn.commit()
    rows = match.similar(conn, _pid(conn, "a", "A1"), k=3, space="lexical", in_catalog="b")
    assert [r.external_id for r in rows[:2]] == ["B1", "B2"]  # the code variant above the look-alike code
    assert rows[0].lexical_similarity > rows[1].lexical_similarity
    assert rows[0].fused_similarity is None  # no model: neural similarities are NULL, not an error
    rows = match.similar(conn, _pid(conn, "a", "A2"), k=2, space="lexical", in_catalog="b")
    assert rows[0].external_id == "B3"  # Самсунг ~ Samsung beats another brand with the same model name


def test_codes_are_extracted_into_an_indexed_column(conn, codes_catalogues):
    refresh_lexical(conn)
    codes = dict(
        conn.execute(
            "SELECT p.external_id, l.codes FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
        ).fetchall()
    )
    assert "PSLX350H" in codes["A1"] and "PSLX350H" in codes["B1"]
    assert "PSLX300H" in codes["B2"]
    indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'lexical'")}
    assert {"lexical_codes_idx", "lexical_vector_hnsw"} <= indexes
    hit = conn.execute(
        "SELECT p.external_id FROM prodmatch.lexical l JOIN prodmatch.products p ON p.id = l.product_id"
        " WHERE l.codes @> ARRAY['PSLX350H'] ORDER BY 1"
    ).fetchall()
    assert [h[0] for h in hit] == ["A1", "B1"]


def test_lexical_index_is_used_and_kept_current_after_a_plain_sql_change(conn, codes_catalogues):
    refresh_lexical(conn)
    conn.commit()
    plan_with_indexes_only(conn)
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN SELECT l.product_id FROM prodmatch.lexical l ORDER BY l.vector <=>"
            " (SELECT vector FROM prodmatch.lexical LIMIT 1)::sparsevec(1048576) LIMIT 5"
        )
    )
    assert "lexical_vector_hnsw" in plan
    conn.execute("; ".join(f"RESET {setting}" for setting in INDEX_ONLY_PLANS))
    conn.execute(
        "UPDATE prodmatch.products SET title = 'Sony PS-LX300H turntable' WHERE external_id = 'A1'"
    )  # an application's plain SQL
    conn.commit()
    done = refresh_lexical(conn)
    conn.commit()
    assert done.encoded == 1
    rows = match.similar(conn, _pid(conn, "a", "A1"), k=1, space="lexical", in_catalog="b")
    assert rows[0].external_id == "B2"  # now the PS-LX300H
    conn.execute("DELETE FROM prodmatch.products WHERE external_id = 'B2'")
    conn.commit()
    rows = match.similar(conn, _pid(conn, "a", "A1"), k=5, space="lexical", in_catalog="b")
    assert "B2" not in [r.external_id for r in rows]


def test_sql_candidates_on_the_lexical_space(conn, codes_catalogues):
    refresh_lexical(conn)
    rows = conn.execute(
        "SELECT s.external_id, t.external_id, c.rank, c.lexical_similarity, c.fused_similarity"
        " FROM prodmatch.candidates('a', 'b', k => 1, space => 'lexical') c"
        " JOIN prodmatch.products s ON s.id = c.source_product_id"
        " JOIN prodmatch.products t ON t.id = c.target_product_id ORDER BY 1"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("A1", "B1"), ("A2", "B3"), ("A3", "B5")]
    assert all(r[2] == 1 and r[3] > 0 and r[4] is None for r in rows)


def test_link_on_the_lexical_space_needs_no_model(conn, codes_catalogues):
    result = match.link(conn, "a", "b", k=2, space="lexical")
    assert result.model is None and result.params["space"] == "lexical"
    rows = conn.execute(
        "SELECT source_external_id, target_external_id, accepted, rank, lexical_similarity, model"
        " FROM prodmatch.matches_v WHERE run_id = %s ORDER BY 1, rank",
        (result.run_id,),
    ).fetchall()
    accepted = {(r[0], r[1]) for r in rows if r[2]}
    assert accepted == {("A1", "B1"), ("A2", "B3"), ("A3", "B5")}
    assert all(r[2] == (r[3] == 1) for r in rows)  # a cosine-only run accepts each source's rank 1
    assert all(r[5] is None for r in rows)
    again = match.link(conn, "a", "b", k=2, space="lexical")  # re-run replaces
    assert conn.execute("SELECT count(*) FROM prodmatch.match_runs").fetchone()[0] == 1
    assert again.run_id != result.run_id


def test_matcher_trains_stores_and_links_one_to_one(conn, demo, tmp_path):
    report = train_and_store(conn, demo.gold, "shop", "competitor", name="m")
    assert report.positives > 50 and report.candidate_recall["union"] >= 0.95
    assert report.metrics["out_of_fold_f1"] > 0.5
    stored = conn.execute(
        "SELECT definition, features, threshold FROM prodmatch.matchers WHERE name = 'm'"
    ).fetchone()
    assert stored[0]["format"] == "prodmatch-matcher" and stored[1] == report.features
    result = match.link(conn, "shop", "competitor", matcher="m", one_to_one=True, k=3)
    rows = conn.execute(
        "SELECT source_product_id, target_product_id, match_probability, accepted, signals, matcher"
        " FROM prodmatch.matches_v WHERE run_id = %s",
        (result.run_id,),
    ).fetchall()
    accepted = [r for r in rows if r[3]]
    assert accepted and len(accepted) == result.accepted
    assert len({r[0] for r in accepted}) == len(accepted)  # each source at most once
    assert len({r[1] for r in accepted}) == len(accepted)  # each target at most once
    assert all(r[2] >= stored[2] for r in accepted)
    assert all(0 <= r[2] <= 1 for r in rows) and all(r[5] == "m" for r in rows)
    assert any("brand_equal" in (r[4] or {}) for r in rows)
    many = match.link(conn, "shop", "competitor", matcher="m", k=3)  # without one-to-one: threshold alone
    assert many.accepted >= result.accepted


def test_matcher_beats_the_best_single_signal_on_the_demo_catalogues(conn, demo, tmp_path):
    train_and_store(conn, demo.gold, "shop", "competitor", name="m")
    evaluation = evaluate_matcher(conn, demo.gold, "m", "shop", "competitor", plots_dir=tmp_path / "plots")
    best_single = max(r.f1 for r in evaluation.rows if r.name != "matcher")
    best_matcher = max(r.f1 for r in evaluation.rows if r.name == "matcher")
    assert best_matcher > best_single
    assert Path(evaluation.plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stored_matcher_loads_without_running_code(conn, demo, tmp_path):
    train_and_store(conn, demo.gold, "shop", "competitor", name="m")
    loaded, model = load_matcher(conn, "m")
    assert model is None and loaded.feature_names
    marker = tmp_path / "ran"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR."  # a pickle that would run a shell command
    conn.execute(
        "UPDATE prodmatch.matchers SET definition = jsonb_set(definition, '{model}', %s::jsonb) WHERE name = 'm'",
        (json.dumps({"lightgbm": payload, "pickle": payload}),),
    )
    conn.commit()
    with pytest.raises(ProdmatchError):
        load_matcher(conn, "m")
    assert not marker.exists()


def test_explain_shows_every_signal_and_its_contribution(conn, demo):
    train_and_store(conn, demo.gold, "shop", "competitor", name="m")
    source, target = conn.execute(
        "SELECT s.external_id, t.external_id FROM prodmatch.products s, prodmatch.products t"
        " JOIN prodmatch.catalogs c ON c.id = t.catalog_id WHERE c.name = 'competitor' LIMIT 1"
    ).fetchone()
    explained = explain_pair(conn, f"shop:{source}", f"competitor:{target}", matcher="m")
    assert set(explained.signals) >= {"sim:lexical", "price_log_ratio", "codes_agree", "brand_equal"}
    raw = sum(v for v in explained.contributions.values())
    assert 0.0 <= explained.probability <= 1.0
    assert np.isfinite(raw)
    assert "contribution" in explained.to_text()


def test_cli_matcher_train_list_link_eval_explain_drop(settings, demo, tmp_path):
    runner = CliRunner()
    url = ["--database-url", settings.database_url, "--home", str(settings.home)]
    done = runner.invoke(
        main,
        [
            *url,
            "matcher",
            "train",
            "--gold",
            str(demo.gold),
            "--source",
            "shop",
            "--target",
            "competitor",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    trained = json.loads(done.output)
    assert trained["name"] == "shop-competitor" and trained["kind"] in ("gbdt", "logistic", "blend")
    listed = runner.invoke(main, [*url, "matcher", "list", "--json"])
    assert [m["name"] for m in json.loads(listed.output)] == ["builtin", "shop-competitor"]
    linked = runner.invoke(
        main,
        [
            *url,
            "link",
            "--source",
            "shop",
            "--target",
            "competitor",
            "--matcher",
            "shop-competitor",
            "--json",
        ],
    )
    assert linked.exit_code == 0, linked.output
    assert json.loads(linked.output)["accepted"] > 0
    evaluated = runner.invoke(
        main,
        [*url, "eval", "--gold", str(demo.gold), "--source", "shop", "--target", "competitor",
         "--matcher", "shop-competitor", "--plots", str(tmp_path / "p")],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert "matcher" in evaluated.output and "sim:lexical" in evaluated.output
    explained = runner.invoke(
        main, [*url, "explain", "shop:SH-0001", "competitor:" + _first_competitor(settings)]
    )
    assert explained.exit_code == 0, explained.output
    dropped = runner.invoke(main, [*url, "matcher", "drop", "shop-competitor"])
    assert dropped.exit_code == 0
    missing = runner.invoke(
        main, [*url, "link", "--source", "shop", "--target", "competitor", "--matcher", "nope"]
    )
    assert missing.exit_code == 1 and "no matcher named 'nope'" in missing.output


def _first_competitor(settings) -> str:
    with store_api.connection(settings) as conn:
        return conn.execute(
            "SELECT p.external_id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
            " WHERE c.name = 'competitor' ORDER BY 1 LIMIT 1"
        ).fetchone()[0]


def test_leaving_widespread_terms_out_of_the_lexical_search_keeps_its_recall(conn, demo, monkeypatch):
    """The rule that large catalogues search without their most widespread terms, forced onto the demo's 150
    products (terms in over 5% of them): the lexical source still finds the gold pairs it found before."""
    from prodmatch.match import hybrid

    full = train_and_store(conn, demo.gold, "shop", "competitor", name="full")
    monkeypatch.setattr(hybrid, "WIDESPREAD_MIN_TARGETS", 0)
    terms = []  # (terms searched with, heaviest terms) per call
    query_terms = hybrid._query_terms

    def counting(s, document_frequency, n_targets):
        searched = query_terms(s, document_frequency, n_targets)
        terms.append((searched.nnz, hybrid._heaviest_terms(s, hybrid.LEXICAL_QUERY_TERMS).nnz))
        return searched

    monkeypatch.setattr(hybrid, "_query_terms", counting)
    pruned = train_and_store(conn, demo.gold, "shop", "competitor", name="pruned")
    assert terms and all(searched < heaviest * 0.9 for searched, heaviest in terms), terms  # some left out
    assert pruned.candidate_recall["lexical"] >= full.candidate_recall["lexical"] - 0.02
    assert pruned.candidate_recall["union"] >= full.candidate_recall["union"] - 0.02


def test_matcher_eval_counts_a_source_known_only_by_non_matches(conn, demo, tmp_path):
    """A source whose gold lines are all label 0 has no twin: a pair the matcher accepts for it is a false
    positive, as `eval` of a link run counts it; before, such sources were left out of the matcher's figures."""
    train_and_store(conn, demo.gold, "shop", "competitor", name="m")
    lines = demo.gold.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    positives = [r for r in rows if r[-1] == "1"]
    # the matched pair the matcher is surest of: it accepts it whatever the gold file says
    match.link(conn, "shop", "competitor", matcher="m", k=5)
    sure = conn.execute(
        "SELECT source_external_id, target_external_id FROM prodmatch.matches_v"
        " WHERE accepted ORDER BY match_probability DESC, source_external_id"
    ).fetchall()
    chosen = next(r for r in positives if (r[1], r[3]) in set(sure))
    others = [r for r in rows if r[1] != chosen[1]]  # the chosen source's every line left out
    unjudged = _write(tmp_path / "unjudged.csv", "\n".join([header, *(",".join(r) for r in others)]) + "\n")
    no_twin = [*others, [*chosen[:-1], "0"]]  # ... or known only as a non-match
    judged = _write(tmp_path / "no_twin.csv", "\n".join([header, *(",".join(r) for r in no_twin)]) + "\n")
    before = evaluate_matcher(conn, unjudged, "m", "shop", "competitor")
    after = evaluate_matcher(conn, judged, "m", "shop", "competitor")
    assert after.sources == before.sources + 1 and after.gold_pairs == before.gold_pairs
    row = {(r.name, r.mode): r for r in before.rows}[("matcher", "all")]
    worse = {(r.name, r.mode): r for r in after.rows}[("matcher", "all")]
    assert worse.recall == row.recall and worse.precision < row.precision
