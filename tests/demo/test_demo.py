"""The demo, end to end at a small size: generate, ingest, embed, evaluate, link, dedupe, report."""

from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.demo.run import FALLBACK_MODEL, FEW_LABELS


def test_demo_runs_end_to_end(settings, tiny_clip_dir, tmp_path):
    folder = tmp_path / "demo"
    args = ["--database-url", settings.database_url, "demo", "--size", "24", "--folder", str(folder)]
    result = CliRunner().invoke(main, [*args, "--model", str(tiny_clip_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model_note"] is None
    assert report["ingested"]["shop"]["rows"] >= 24 and report["ingested"]["shop"]["rejected"] == 0
    assert report["ingested"]["competitor"]["rejected"] == 0
    assert report["embedded"]["embedded"] + report["embedded"]["image_errors"] == sum(
        c["rows"] for c in report["ingested"].values()
    )
    assert {s["space"] for s in report["evaluation"]["spaces"]} == {"image", "text", "fused"}
    assert report["link"]["pairs"] > 0 and (folder / "matches.csv").exists()
    # the learned matcher beside the built-in one with no label and with a first few labels as corrections
    decided = {(r["name"], r["mode"]): r["f1"] for r in report["matcher"]["rows"]}
    assert {("matcher", "1:1"), ("builtin", "1:1"), (f"builtin+{FEW_LABELS}", "1:1")} <= set(decided)
    assert all(0.0 <= f1 <= 1.0 for f1 in decided.values())
    for path in report["plots"].values():
        with Image.open(path) as image:
            assert image.format == "PNG"
    with db.connection(settings) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM prodmatch.matches_v WHERE run_id = %s", (report["link"]["run_id"],)
            ).fetchone()[0]
            == report["link"]["pairs"]
        )
        saved = conn.execute("SELECT settings FROM prodmatch.models").fetchone()[0]
        assert saved["threshold"] == report["evaluation"]["recommendation"]["threshold"]
    again = CliRunner().invoke(main, [*args, "--model", str(tiny_clip_dir)])  # re-running is safe
    assert again.exit_code == 0, again.output
    assert "recall@1" in again.output and "plot precision_recall" in again.output


def test_demo_without_a_loadable_model_falls_back_to_a_local_random_clip(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(
        main,
        [
            "--database-url",
            settings.database_url,
            "--home",
            str(tmp_path / "home"),
            "demo",
            "--size",
            "12",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == FALLBACK_MODEL
    assert "local directory" in report["model_note"] or "--model DIR" in report["model_note"]


def test_demo_can_fine_tune_and_compare(settings, tiny_clip_dir, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(
            main,
            [
                "--database-url",
                settings.database_url,
                "demo",
                "--size",
                "16",
                "--folder",
                str(tmp_path / "d"),
                "--model",
                str(tiny_clip_dir),
                "--finetune",
                "--json",
            ],
        )
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    tuned = json.loads(result.stdout)["finetune"]
    assert tuned["model"].endswith("-ft") and set(tuned["holdout_after"]) == {"image", "text", "fused"}
    with db.connection(settings) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM prodmatch.models")}
        assert tuned["model"] in names
        done = conn.execute(
            "SELECT count(*) FROM prodmatch.embeddings e JOIN prodmatch.models m ON m.id = e.model_id"
            " WHERE m.name = %s AND e.status = 'done'",
            (tuned["model"],),
        ).fetchone()[0]
        assert done > 0
