"""Evaluation: metrics against hand-computed values, plots, recommendation saved and used by link."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from builders import products_with_vectors
from click.testing import CliRunner
from PIL import Image

from prodmatch import match as matching
from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.fusion import fuse
from prodmatch.embed.registry import add_model
from prodmatch.errors import ConfigError
from prodmatch.quality.evaluate import evaluate, save_recommendation
from prodmatch.quality.gold import read_gold
from prodmatch.store.models import get_model


def _unit(degrees: float) -> np.ndarray:
    v = np.zeros(32)
    v[0], v[1] = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return v


@pytest.fixture
def small_case(settings, tiny_clip_dir, tmp_path):
    """s1 at 0 deg, s2 at 90, s3 at 180; t1 at 10, t2 at 75, t3 at 120, t4 at 200 (similarity = cos of the angle
    between). Gold: s1->t1 match, s2->t3 match (but t2 is closer), s3->t4 known non-match, plus an unknown id."""
    with db.connection(settings) as conn:
        # 4-byte storage: the expected figures below are computed to 1e-5
        model = add_model(conn, str(tiny_clip_dir), name="clip", fusion="mean", storage="vector")
        products_with_vectors(conn, model.id, "src", np.stack([_unit(a) for a in (0, 90, 180)]), ["x"] * 3)
        products_with_vectors(
            conn, model.id, "tgt", np.stack([_unit(a) for a in (10, 75, 120, 200)]), ["x"] * 4
        )
    gold = tmp_path / "gold.csv"
    gold.write_text(
        "source_catalog,source_id,target_catalog,target_id,label\n"
        "src,src-0,tgt,tgt-0,1\nsrc,src-1,tgt,tgt-2,1\nsrc,src-2,tgt,tgt-3,0\nsrc,src-9,tgt,tgt-0,1\n"
    )
    return model, gold


def test_metrics_match_hand_computed_values(settings, small_case, tmp_path):
    _, gold = small_case
    with db.connection(settings) as conn:
        report = evaluate(conn, gold, plots_dir=tmp_path / "plots", min_precision=0.9)
    assert report.unknown == [f"{gold}:5: unknown product src:src-9"]
    assert (report.pairs, report.positives, report.negatives) == (3, 2, 1)
    for space in report.spaces:
        assert space.recall_at_1 == 0.5 and space.recall_at_5 == 1.0 and space.mrr == 0.75
        thresholds = [p["threshold"] for p in space.curve]
        assert thresholds == pytest.approx([math.cos(math.radians(a)) for a in (10, 15, 20)], abs=1e-5)
        assert [p["precision"] for p in space.curve] == pytest.approx([1.0, 0.5, 0.3333], abs=1e-4)
        assert [p["recall"] for p in space.curve] == [0.5, 0.5, 0.5]
        assert space.best_f1 == pytest.approx(0.6667, abs=1e-4)
        assert space.best_threshold == pytest.approx(math.cos(math.radians(10)), abs=1e-5)
        assert sorted(space.match_scores) == pytest.approx(
            sorted([math.cos(math.radians(10)), math.cos(math.radians(30))]), abs=1e-5
        )
        assert (
            len(space.non_match_scores) == 3
        )  # s3's labelled non-match, and s1's and s2's best wrong candidate
    rec = report.recommendation
    assert rec["threshold"] == pytest.approx(math.cos(math.radians(10)), abs=1e-5) and rec["precision"] == 1.0
    for path in report.plots.values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300


def test_weight_grid_finds_the_weight_that_separates(settings, tiny_clip_dir, tmp_path):
    # images say s0~t0 and s1~t1; texts are misleading (swapped). The best fusion weight leans on the image.
    with db.connection(settings) as conn:
        add_model(conn, str(tiny_clip_dir), name="clip", fusion="concat", image_weight=0.5, storage="vector")
        for catalog in ("a", "b"):
            conn.execute("INSERT INTO prodmatch.catalogs (name) VALUES (%s)", (catalog,))
            for i in range(2):
                conn.execute(
                    "INSERT INTO prodmatch.products (catalog_id, external_id, title)"
                    " SELECT id, %s, 'x' FROM prodmatch.catalogs WHERE name = %s",
                    (f"{catalog}-{i}", catalog),
                )
        rows = {
            "a-0": (_unit(0), _unit(0)),
            "a-1": (_unit(90), _unit(90)),
            "b-0": (_unit(5), _unit(95)),
            "b-1": (_unit(95), _unit(5)),
        }
        for external_id, (image, text) in rows.items():
            fused = fuse(image, text, method="concat", image_weight=0.5)
            conn.execute(
                "UPDATE prodmatch.embeddings e SET image_vector = %s, text_vector = %s, fused_vector = %s,"
                " status = 'done' FROM prodmatch.products p WHERE p.id = e.product_id AND p.external_id = %s",
                (image.astype(np.float32), text.astype(np.float32), fused, external_id),
            )
        conn.commit()
    gold = tmp_path / "gold.csv"
    gold.write_text("source_catalog,source_id,target_catalog,target_id\na,a-0,b,b-0\na,a-1,b,b-1\n")
    with db.connection(settings) as conn:
        report = evaluate(conn, gold)
        image, text = report.spaces[0], report.spaces[1]
        assert image.recall_at_1 == 1.0 and text.recall_at_1 == 0.0
        by_weight = {r.image_weight: r.recall_at_1 for r in report.weight_grid}
        assert by_weight[1.0] == 1.0 and by_weight[0.0] == 0.0
        assert report.recommendation["space"] == "image" or report.recommendation["image_weight"] >= 0.6
        # --save stores it with the model; a fused recommendation re-fuses the stored vectors
        report.recommendation.update(space="fused", image_weight=0.9)
        saved = save_recommendation(conn, report)
        assert saved.image_weight == 0.9 and saved.settings["space"] == "fused"
        assert saved.settings["threshold"] == report.recommendation["threshold"]
        fused = (
            conn.execute(
                "SELECT coalesce(fused_vector, fused_half::vector) FROM prodmatch.embeddings e"
                " JOIN prodmatch.products p"
                " ON p.id = e.product_id WHERE p.external_id = 'b-0'"
            )
            .fetchone()[0]
            .to_numpy()
        )
        expected = np.concatenate([math.sqrt(0.9) * _unit(5), math.sqrt(0.1) * _unit(95)])
        # halfvec storage (the default) keeps 11 significant bits: about 3 decimal digits
        assert fused == pytest.approx(
            expected.astype(np.float32), abs=1e-3 if saved.storage == "halfvec" else 1e-5
        )
        conn.commit()
        result = matching.link(conn, "a", "b", k=1, space="fused")  # the saved threshold goes with its space
        assert result.params["threshold"] == saved.settings["threshold"] and result.params["space"] == "fused"


def test_cli_eval_json_save_and_plots(settings, small_case, tmp_path):
    _, gold = small_case
    plots = tmp_path / "plots"
    result = CliRunner().invoke(
        main,
        [
            "--database-url",
            settings.database_url,
            "eval",
            "--gold",
            str(gold),
            "--plots",
            str(plots),
            "--save",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["saved"] and set(report["plots"]) == {"precision_recall", "score_histogram"}
    assert (plots / "precision_recall.png").exists()
    assert report["unknown"] and {s["space"] for s in report["spaces"]} == {"image", "text", "fused"}
    with db.connection(settings) as conn:
        assert get_model(conn).settings["threshold"] == report["recommendation"]["threshold"]
    text = CliRunner().invoke(main, ["--database-url", settings.database_url, "eval", "--gold", str(gold)])
    assert text.exit_code == 0 and "recall@1" in text.output and "unknown product src:src-9" in text.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n", "missing column"),
        ("source_catalog,source_id,target_catalog,target_id,label\nx,1,y,2,maybe\n", "label must be"),
        ("source_catalog,source_id,target_catalog,target_id\nx,,y,2\n", "empty field"),
        ("source_catalog,source_id,target_catalog,target_id\n", "no gold pairs"),
    ],
)
def test_bad_gold_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "gold.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_gold(path)
