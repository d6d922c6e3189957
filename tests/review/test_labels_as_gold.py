"""`--labels`: eval, matcher train and finetune read the labels people gave instead of a gold file."""

from __future__ import annotations

import json

from click.testing import CliRunner

from prodmatch.cli import main
from prodmatch.demo.catalogues import generate
from prodmatch.ingest import ingest_file


def test_labels_import_then_matcher_train_and_eval_from_labels(settings, conn, tmp_path):
    files = generate(tmp_path / "demo", 60, seed=2, image_size=32)
    ingest_file(conn, files.shop, "shop")
    ingest_file(conn, files.competitor, "competitor")
    conn.commit()
    runner = CliRunner()
    url = ["--database-url", settings.database_url, "--home", str(settings.home)]
    neither = runner.invoke(main, [*url, "matcher", "train", "--source", "shop", "--target", "competitor"])
    assert neither.exit_code != 0 and "exactly one of --gold FILE and --labels" in neither.output
    empty = runner.invoke(
        main, [*url, "matcher", "train", "--labels", "--source", "shop", "--target", "competitor"]
    )
    assert empty.exit_code == 1 and "no labels yet" in empty.output
    imported = runner.invoke(main, [*url, "labels", "import", str(files.gold), "--json"])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output)["imported"] > 20
    trained = runner.invoke(
        main, [*url, "matcher", "train", "--labels", "--source", "shop", "--target", "competitor", "--json"]
    )
    assert trained.exit_code == 0, trained.output
    report = json.loads(trained.output)
    assert 20 < report["gold_pairs"] <= json.loads(imported.output)["imported"]
    evaluated = runner.invoke(
        main,
        [
            *url,
            "eval",
            "--labels",
            "--source",
            "shop",
            "--target",
            "competitor",
            "--matcher",
            report["name"],
            "--json",
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    rows = json.loads(evaluated.output)["rows"]
    assert any(r["name"] == "matcher" and r["f1"] > 0.5 for r in rows)
