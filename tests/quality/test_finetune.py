"""Fine-tuning on gold pairs: it learns, it is reproducible, it saves and registers a loadable model.

The catalogues are generated so that the tiny random model is weak and learning is possible: each rival product
shows the shop product's two coloured shapes shifted, on another background and with noise, and its title has
the shop title's words shuffled, abbreviated and upper-cased.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from transformers import AutoModel

from prodmatch.embed.encoders import Encoder
from prodmatch.embed.registry import add_model
from prodmatch.errors import ConfigError
from prodmatch.ingest.load import ingest_file
from prodmatch.quality.finetune import (
    FinetuneOptions,
    contrastive_loss,
    finetune,
    freeze_for_finetuning,
    holdout_metrics,
    read_gold_pairs,
    split_pairs,
)
from prodmatch.store.models import find_model

PRODUCTS = 60
COLOURS = [
    (220, 30, 30),
    (30, 160, 40),
    (30, 60, 220),
    (240, 150, 20),
    (140, 40, 170),
    (20, 20, 20),
    (230, 220, 30),
    (30, 200, 210),
]
COLOUR_NAMES = ["red", "green", "blue", "orange", "purple", "black", "yellow", "cyan"]
KINDS = ["shoe", "kettle", "lamp", "chair", "watch", "bag"]
ABBREVIATIONS = {"black": "blk", "orange": "org", "purple": "purp", "yellow": "ylw", "green": "grn"}


def second_colour(i: int) -> int:
    """Never the first shape's colour: 64 products get 56 distinct colour pairs."""
    return (i + 1 + (i // 8) % 7) % 8


def draw_product(i: int, *, rival: bool, rng: random.Random) -> Image.Image:
    """Product i's photo: two coloured shapes; the rival's is shifted, on another background, with noise."""
    background = (255, 255, 255) if not rival else tuple(rng.randrange(60, 200) for _ in range(3))
    image = Image.new("RGB", (64, 64), background)
    draw = ImageDraw.Draw(image)
    dx, dy = (rng.randrange(-4, 5), rng.randrange(-4, 5)) if rival else (0, 0)
    first, second = COLOURS[i % 8], COLOURS[second_colour(i)]
    draw.rectangle([6 + dx, 6 + dy, 30 + dx + i % 5, 40 + dy], fill=first)
    draw.ellipse([28 + dx, 24 + dy - i % 4, 58 + dx, 58 + dy], fill=second)
    if rival:
        pixels = np.asarray(image, dtype=np.int16)
        noise = np.random.default_rng(i).integers(-25, 26, size=pixels.shape)
        image = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    return image


def title(i: int, *, rival: bool, rng: random.Random) -> str:
    words = [COLOUR_NAMES[i % 8], COLOUR_NAMES[second_colour(i)], KINDS[i % 6], f"model {i}"]
    if not rival:
        return " ".join(words)
    words = [ABBREVIATIONS.get(w, w) for w in words]
    rng.shuffle(words)
    return " ".join(words).upper()


def write_catalogues(tmp_path: Path, n: int = PRODUCTS) -> tuple[Path, Path]:
    rng = random.Random(7)
    files = []
    for name, rival in (("shop", False), ("rival", True)):
        folder = tmp_path / name
        folder.mkdir()
        lines = ["external_id,title,brand,image"]
        for i in range(n):
            draw_product(i, rival=rival, rng=rng).save(folder / f"{i}.png")
            lines.append(f"{name}-{i},{title(i, rival=rival, rng=rng)},Brand{i % 3},{i}.png")
        path = folder / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    return files[0], files[1]


def write_gold(path: Path, n: int = PRODUCTS, extra: list[str] = ()) -> Path:
    lines = ["source_catalog,source_id,target_catalog,target_id,label"]
    lines += [f"shop,shop-{i},rival,rival-{i},1" for i in range(n)]
    lines += [f"shop,shop-{i},rival,rival-{(i + 1) % n},0" for i in range(5)]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: starting intra-op threads costs more than the work (10x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def catalogues(conn, tmp_path):
    shop, rival = write_catalogues(tmp_path)
    ingest_file(conn, shop, "shop")
    ingest_file(conn, rival, "rival")
    conn.commit()
    return tmp_path


FAST = FinetuneOptions(epochs=15, batch_size=16, lr=3e-3, holdout=0.25, seed=0, precision="fp32")
BAD_LINES = [
    "shop,shop-0,rival,rival-0,1",  # a repeated pair counts once
    "shop,shop-999,rival,rival-1,1",
    "shopp,shop-1,rival,rival-1,1",
    "shop,shop-1,rival,rival-1,maybe",
    "shop,shop-1",
]


def test_finetune_learns_saves_and_registers(conn, catalogues, tiny_clip_dir, tmp_path):
    add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
    gold = write_gold(tmp_path / "gold.csv", extra=BAD_LINES)
    out = tmp_path / "clip-ft"
    result = finetune(conn, gold, "clip", out, FAST)

    assert (result.train_pairs, result.holdout_pairs, result.non_matches) == (45, 15, 5)
    assert result.unknown == [
        f"{gold}:68: no product 'shop-999' in catalogue 'shop'",
        f"{gold}:69: no catalogue named 'shopp' (catalogues: rival, shop)",
        f"{gold}:70: label must be 1 (same product) or 0, got 'maybe'",
        f"{gold}:71: expected source_catalog,source_id,target_catalog,target_id,label (label optional), got 'shop,shop-1'",
    ]
    assert result.model_name == "clip-ft" and result.image_errors == [] and result.precision == "fp32"
    assert len(result.losses) == FAST.epochs and result.losses[-1] < 0.6 * result.losses[0]
    # hold-out products were never trained on; the tuned model finds their rival counterparts far more often
    for space in ("image", "fused"):
        assert result.after[space]["recall_at_1"] >= result.before[space]["recall_at_1"] + 0.3, space
    assert result.after["fused"]["f1"] >= result.before["fused"]["f1"] + 0.3
    json.dumps(result.to_dict(), allow_nan=False)

    # the directory loads like any checkpoint, and embeds differently from the base model
    tuned, base = Encoder.load(str(out), precision="fp32"), Encoder.load(str(tiny_clip_dir), precision="fp32")
    image = Image.open(catalogues / "rival" / "3.png").convert("RGB")
    assert not np.allclose(tuned.embed_images([image]), base.embed_images([image]), atol=1e-3)
    assert not np.allclose(tuned.embed_texts(["red shoe"]), base.embed_texts(["red shoe"]), atol=1e-3)
    # registered beside the base, with its fusion and template, every product queued for embedding
    registered = find_model(conn, "clip-ft")
    assert registered is not None and registered.source == str(out.resolve())
    assert (registered.fusion, registered.image_weight, registered.text_template) == (
        "mean",
        0.5,
        "{brand} {title}",
    )
    pending = conn.execute(
        "SELECT count(*) FROM prodmatch.embeddings WHERE model_id = %s AND status = 'pending'",
        (registered.id,),
    ).fetchone()[0]
    assert pending == 2 * PRODUCTS
    # only the trainable part moved: embeddings, the first layers and the logit scale are the base's to the bit
    weights_before = load_file(tiny_clip_dir / "model.safetensors")
    weights_after = load_file(out / "model.safetensors")
    assert weights_after.keys() == weights_before.keys()
    moved = {name for name in weights_before if not torch.equal(weights_before[name], weights_after[name])}
    assert "visual_projection.weight" in moved and "text_projection.weight" in moved
    assert (
        "vision_model.post_layernorm.weight" in moved
        and "text_model.encoder.layers.0.mlp.fc1.weight" in moved
    )
    assert not {
        name for name in moved if "embeddings" in name or "pre_layrnorm" in name or name == "logit_scale"
    }


def test_same_seed_same_losses(conn, catalogues, tiny_clip_dir, tmp_path):
    gold = write_gold(tmp_path / "gold.csv")
    options = replace(FAST, epochs=2, train_layers=1, precision="auto")  # bf16 autocast where the CPU has it
    runs = [
        finetune(
            conn, gold, str(tiny_clip_dir), tmp_path / f"out-{i}", replace(options, seed=seed, name=f"m{i}")
        )
        for i, seed in enumerate((5, 5, 6))
    ]
    assert runs[0].losses == runs[1].losses
    assert runs[0].before == runs[1].before and runs[0].after == runs[1].after
    assert runs[2].losses != runs[0].losses
    for a, b in [(runs[0], runs[1])]:
        weights = [load_file(Path(run.out) / "model.safetensors") for run in (a, b)]
        assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    # a hub id or directory as the base: the default template and "<folder name>-ft" as the name by default
    default = finetune(conn, gold, str(tiny_clip_dir), tmp_path / "out-default", replace(options, epochs=1))
    assert default.model_name == "tiny-clip-ft" and default.source == str(tiny_clip_dir)
    assert find_model(conn, "tiny-clip-ft").text_template == "{brand} {title}"


def test_siglip_trains_around_a_broken_image(conn, catalogues, tiny_siglip_dir, tmp_path):
    add_model(conn, str(tiny_siglip_dir), name="siglip", precision="fp32", fusion="concat", image_weight=0.7)
    conn.execute(
        "UPDATE prodmatch.products SET image = %s WHERE external_id = 'rival-4'",
        (str(tmp_path / "gone.png"),),
    )
    gold = write_gold(tmp_path / "gold.csv")
    result = finetune(conn, gold, "siglip", tmp_path / "siglip-ft", replace(FAST, epochs=4))
    assert len(result.image_errors) == 1 and result.image_errors[0].startswith("rival:rival-4: ")
    assert result.losses[-1] < result.losses[0]
    assert result.after["fused"]["recall_at_1"] > result.before["fused"]["recall_at_1"]
    registered = find_model(conn, "siglip-ft")
    assert (registered.family, registered.fusion, registered.image_weight) == ("siglip", "concat", 0.7)
    tuned = Encoder.load(registered.source, precision="fp32")
    assert tuned.embed_texts(["red shoe"]).shape == (1, registered.dimension)


@pytest.mark.parametrize("header", [True, False])
def test_read_gold_pairs_reports_every_unused_line(conn, catalogues, tmp_path, header):
    lines = ["target_id;target_catalog;source_id;source_catalog"] if header else []
    lines += ["rival-1;rival;shop-1;shop", "", "rival-2;rival;shop-2;shop", "rival-x;rival;shop-3;shop"]
    if not header:
        lines = [";".join(line.split(";")[::-1]) if line else line for line in lines]
    gold = tmp_path / "gold.csv"
    gold.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    pairs, unknown = read_gold_pairs(conn, gold)
    assert [(p.source.external_id, p.target.external_id, p.label) for p in pairs] == [
        ("shop-1", "rival-1", 1),
        ("shop-2", "rival-2", 1),
    ]
    assert pairs[0].source.title == "green blue kettle model 1" and pairs[0].target.catalog == "rival"
    first = 2 if header else 1
    assert [p.line for p in pairs] == [first, first + 2]
    assert unknown == [f"{gold}:{first + 3}: no product 'rival-x' in catalogue 'rival'"]


def test_refuses_what_it_cannot_train_on(conn, catalogues, tiny_clip_dir, tmp_path):
    add_model(conn, str(tiny_clip_dir), name="clip", precision="fp32")
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("shop,shop-1,rival,rival-1,0\nshop,nope,rival,rival-2\n")
    with pytest.raises(ConfigError, match=r"no usable matched pair.*\n.*nothing.csv:2: no product 'nope'"):
        finetune(conn, nothing, "clip", tmp_path / "a", FAST)
    with pytest.raises(ConfigError, match="does not exist"):
        finetune(conn, tmp_path / "missing.csv", "clip", tmp_path / "a", FAST)
    gold = write_gold(tmp_path / "gold.csv")
    with pytest.raises(ConfigError, match="'clip' is already registered"):
        finetune(conn, gold, "clip", tmp_path / "a", replace(FAST, name="clip"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        finetune(conn, gold, "clip", tmp_path / "full", FAST)
    for bad in ({"epochs": 0}, {"batch_size": 1}, {"lr": 0.0}, {"holdout": 1.0}, {"precision": "fp8"}):
        with pytest.raises(ConfigError):
            finetune(conn, gold, "clip", tmp_path / "a", replace(FAST, **bad))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_freeze_keeps_the_input_side_and_early_layers(family, request):
    model = AutoModel.from_pretrained(request.getfixturevalue(f"tiny_{family}_dir"))
    trainable = freeze_for_finetuning(model, train_layers=1)
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {id(p) for p in trainable} == {id(p) for name, p in model.named_parameters() if name in names}
    assert not {n for n in names if "embeddings" in n or ".layers.0." in n or n.startswith("logit_")}
    assert {n for n in names if ".layers.1." in n}
    expected = {
        "clip": {"visual_projection.weight", "text_projection.weight", "vision_model.post_layernorm.weight"},
        "siglip": {"vision_model.head.probe", "text_model.head.weight", "text_model.final_layer_norm.weight"},
    }[family]
    assert expected <= names
    freeze_for_finetuning(model, train_layers=0)
    assert not {n for n, p in model.named_parameters() if p.requires_grad and ".layers." in n}


def test_split_keeps_products_on_one_side():
    def product(i: int):
        return SimpleNamespace(id=i)

    # pairs 0 and 1 share source 1; pairs 2 and 3 share target 12
    links = [(1, 10), (1, 11), (2, 12), (3, 12)] + [(i, 100 + i) for i in range(4, 20)]
    pairs = [SimpleNamespace(source=product(s), target=product(t)) for s, t in links]
    for seed in range(10):
        train, holdout = split_pairs(pairs, 0.25, seed)
        assert len(train) + len(holdout) == len(pairs) and 5 <= len(holdout) <= 6
        trained = {p.source.id for p in train} | {p.target.id for p in train}
        assert not trained & ({p.source.id for p in holdout} | {p.target.id for p in holdout})
        assert split_pairs(pairs, 0.25, seed) == (train, holdout)
    assert split_pairs(pairs, 0.0, 0) == (pairs, [])


def test_holdout_metrics():
    eye = np.eye(4, dtype=np.float32)
    sources = np.array([eye[0], eye[1], eye[1], [np.nan] * 4], dtype=np.float32)
    truth = [{0}, {1}, {2}, {3}]  # source 2's top-1 is target 1 (wrong); source 3 has no vector
    metrics = holdout_metrics(sources, eye, truth)
    assert metrics["recall_at_1"] == 0.5
    # accepting everything scoring >= 1.0 gives 2 right of 3 predictions, of 4 true matches: F1 = 4/7
    assert metrics["f1"] == round(4 / 7, 4) and metrics["threshold"] == 1.0


def test_contrastive_loss_ignores_missing_images():
    torch.manual_seed(0)
    n, d = 6, 8
    unit = lambda: torch.nn.functional.normalize(torch.randn(n, d), dim=-1)  # noqa: E731
    sources, targets = {"image": unit(), "text": unit()}, {"image": unit(), "text": unit()}
    present = {
        key: torch.ones(n, dtype=torch.bool)
        for key in ("source_image", "target_image", "source_text", "target_text")
    }
    present["target_image"] = torch.tensor([True, True, True, True, True, False])
    shared = torch.eye(n, dtype=torch.bool)
    loss = contrastive_loss(sources, targets, present, shared, 20.0)
    targets["image"][5] = torch.randn(d)  # whatever the missing image's row holds
    assert torch.equal(contrastive_loss(sources, targets, present, shared, 20.0), loss)
    # matched rows that agree give a lower loss than random ones
    aligned = contrastive_loss(
        sources, {"image": sources["image"], "text": sources["text"]}, present, shared, 20.0
    )
    assert aligned < loss


def test_cli_finetune_reports_before_and_after(settings, catalogues, tiny_clip_dir, tmp_path):
    from click.testing import CliRunner

    from prodmatch.cli import main

    gold = write_gold(tmp_path / "gold.csv")
    args = [
        "--database-url",
        settings.database_url,
        "finetune",
        "--gold",
        str(gold),
        "--base",
        str(tiny_clip_dir),
        "--out",
        str(tmp_path / "tuned"),
        "--epochs",
        "2",
        "--lr",
        "3e-3",
        "--name",
        "tuned",
        "--holdout",
        "0.25",
    ]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model_name"] == "tuned" and set(report["before"]) == {"image", "text", "fused"}
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "tuned" in again.output  # the folder / name is taken: a clear refusal
