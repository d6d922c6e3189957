"""similar, search and dedupe on a random-weight model (the demo's fallback, the tests' toy models): by default
they do not rank by its vectors, which put unrelated products side by side; they say so in one line."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.registry import RANDOM_WEIGHTS_FLAG, has_random_weights
from prodmatch.store.models import get_model


def _cli(settings, *args: str):
    return CliRunner().invoke(main, ["--database-url", settings.database_url, *args])


def test_a_toy_checkpoint_is_marked_and_registers_as_random_weights(
    settings, tiny_clip_dir, clip_model, tmp_path
):
    assert json.loads((tiny_clip_dir / "config.json").read_text())[RANDOM_WEIGHTS_FLAG] is True
    with db.connection(settings) as conn:
        assert get_model(conn, "clip").random_weights and get_model(conn, "clip").settings["random_weights"]
    real = shutil.copytree(tiny_clip_dir, tmp_path / "real")
    config = json.loads((real / "config.json").read_text())
    del config[RANDOM_WEIGHTS_FLAG]
    (real / "config.json").write_text(json.dumps(config))
    assert not has_random_weights(str(real))
    assert not has_random_weights("openai/clip-vit-base-patch32")  # a hub id: no local config to read


def test_similar_names_the_product_then_ranks_by_the_lexical_space(settings, matched):
    done = _cli(settings, "similar", "shop:shop-2", "--k", "3", "--other-catalog")
    assert done.exit_code == 0, done.output
    assert "model clip has random weights" in done.stderr and "--space fused" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "similar to shop:shop-2  Acme chair model 2  [Home]  102, by the lexical space:"
    assert "rival:rival-2" in lines[2]  # the best candidate, by its title
    listed = json.loads(_cli(settings, "similar", "shop:shop-2", "--k", "3", "--json").stdout)
    assert (
        listed[0]["lexical_similarity"] >= listed[1]["lexical_similarity"] >= listed[2]["lexical_similarity"]
    )
    # --space always means what it says, with no note
    explicit = _cli(settings, "similar", "shop:shop-2", "--k", "3", "--space", "fused", "--json")
    assert explicit.exit_code == 0 and not explicit.stderr
    fused = [r["fused_similarity"] for r in json.loads(explicit.stdout)]
    assert fused == sorted(fused, reverse=True)


def test_search_ranks_by_the_lexical_space_and_dedupe_refuses(settings, matched):
    done = _cli(settings, "search", "kettle model 12", "--k", "2", "--in-catalog", "shop", "--json")
    assert done.exit_code == 0, done.output
    assert "random weights" in done.stderr
    assert json.loads(done.stdout)[0]["external_id"] == "shop-12"
    # dedupe has no lexical path: it refuses the random vectors unless asked for them
    refused = _cli(settings, "dedupe", "--catalog", "shop", "--threshold", "0.95")
    assert refused.exit_code == 1
    assert "model clip has random weights" in refused.output and "--space fused" in refused.output
    asked = _cli(
        settings, "dedupe", "--catalog", "shop", "--threshold", "0.999", "--space", "fused", "--json"
    )
    assert asked.exit_code == 0 and json.loads(asked.stdout)["clusters"] == 0


def test_with_no_model_similar_uses_the_lexical_space(settings, tmp_path):
    from builders import write_items

    from prodmatch.ingest.load import ingest_file

    items = [
        (f"p-{i}", title, "none.png", 10 + i)
        for i, title in enumerate(["red lamp", "red lamp x", "blue mug"])
    ]
    with db.connection(settings) as conn:
        ingest_file(conn, write_items(tmp_path, "shop", items), "shop")
    done = _cli(settings, "similar", "shop:p-0", "--k", "1")
    assert done.exit_code == 0, done.output
    assert "no model is registered" in done.stderr
    assert "shop:p-1" in done.stdout.splitlines()[2]


def test_several_random_weight_models_and_a_real_one(settings, tiny_clip_dir, tmp_path):
    from prodmatch.embed.registry import add_model
    from prodmatch.match import default_space

    real = shutil.copytree(tiny_clip_dir, tmp_path / "real")
    config = json.loads((real / "config.json").read_text())
    del config[RANDOM_WEIGHTS_FLAG]
    (real / "config.json").write_text(json.dumps(config))
    with db.connection(settings) as conn:
        for name in ("toy", "toy-ft"):
            add_model(conn, str(tiny_clip_dir), name=name, precision="fp32")
        both = default_space(conn, None, None)
        assert (both.space, both.reason) == (
            "lexical",
            "models toy, toy-ft have random weights (a stand-in, not a real model)",
        )
        add_model(conn, str(real), name="real", precision="fp32")
        assert (
            default_space(conn, None, "real").space == "fused"
            and default_space(conn, None, "real").note is None
        )
        assert default_space(conn, None, None, default="image").space == "image"  # several: --model decides
        assert default_space(conn, None, "toy").space == "lexical"
        assert default_space(conn, "text", "toy").space == "text"
