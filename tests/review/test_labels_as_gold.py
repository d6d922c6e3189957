"""`--labels`: eval, matcher train and finetune read the labels people gave instead of a gold file."""

from __future__ import annotations

import json

import numpy as np
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
    assert report["metrics"]["prior"] == "builtin"  # labels people gave start from the built-in matcher
    alone = runner.invoke(
        main,
        [*url, "matcher", "train", "--labels", "--prior", "none", "--source", "shop", "--target", "competitor",
         "--name", "alone", "--json"],
    )  # fmt: skip
    assert alone.exit_code == 0, alone.output
    assert "prior" not in json.loads(alone.output)["metrics"]
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


def test_matcher_train_from_the_builtin_prior_with_a_few_labels(settings, conn, tmp_path, monkeypatch):
    """`matcher train --labels --prior builtin`: the built-in matcher's view of every candidate pair, with 30
    labels as corrections; stored, listed and linked like any matcher."""
    import csv

    files = generate(tmp_path / "demo", 80, seed=3, image_size=32)
    ingest_file(conn, files.shop, "shop")
    ingest_file(conn, files.competitor, "competitor")
    conn.commit()
    with open(files.gold, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    few = tmp_path / "few.csv"
    with open(few, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:30])
    runner = CliRunner()
    url = ["--database-url", settings.database_url, "--home", str(settings.home)]
    assert runner.invoke(main, [*url, "labels", "import", str(few)]).exit_code == 0
    train = [*url, "matcher", "train", "--labels", "--source", "shop", "--target", "competitor"]
    missing = runner.invoke(main, [*train, "--prior", "nope"])
    assert missing.exit_code == 1 and "no matcher named 'nope'" in missing.output
    trained = runner.invoke(main, [*train, "--prior", "builtin", "--name", "started", "--json"])
    assert trained.exit_code == 0, trained.output
    report = json.loads(trained.output)
    assert report["metrics"]["prior"] == "builtin" and report["kind"] == "gbdt"
    assert report["pairs"] == report["metrics"]["n_labelled"] <= 30
    # it learned the prior on every shop product's candidates, not only on the labelled ones
    assert report["metrics"]["n_pairs"] > 5 * report["pairs"]
    stored = conn.execute("SELECT trained_on FROM prodmatch.matchers WHERE name = 'started'").fetchone()[0]
    assert stored["prior"] == "builtin" and stored["population_pairs"] == report["metrics"]["n_pairs"]
    linked = runner.invoke(
        main, [*url, "link", "--source", "shop", "--target", "competitor", "--matcher", "started", "--json"]
    )
    assert linked.exit_code == 0, linked.output
    evaluated = runner.invoke(
        main,
        [*url, "eval", "--gold", str(files.gold), "--source", "shop", "--target", "competitor",
         "--matcher", "started", "--json"],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    f1 = {r["name"]: r["f1"] for r in json.loads(evaluated.output)["rows"]}["matcher"]
    assert f1 > 0.7, f1
    # past PRIOR_MAX_SOURCES source products, a seeded sample of them carries the prior, labelled ones always in
    from prodmatch.quality import matchers
    from prodmatch.store.catalogs import catalog_id

    shop = catalog_id(conn, "shop")
    ids = [r[0] for r in conn.execute("SELECT id FROM prodmatch.products WHERE catalog_id = %s", (shop,))]
    assert matchers._population(conn, shop, np.array(ids[:3]), 0) is None  # 80 products: all of them
    monkeypatch.setattr(matchers, "PRIOR_MAX_SOURCES", 10)
    sample = matchers._population(conn, shop, np.array(ids[-3:]), 0)
    assert set(ids[-3:]) <= set(sample.tolist()) <= set(ids) and 10 <= len(sample) <= 13
    assert np.array_equal(sample, matchers._population(conn, shop, np.array(ids[-3:]), 0))
