"""A multilingual model (SigLIP 2, random weights, real architecture, in both its fixed-resolution and NaFlex
forms): Russian and Chinese text, images, fused vectors, the worker and similar() in PostgreSQL, and the
`multilingual` alias."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from builders import product_image, write_items
from click.testing import CliRunner
from PIL import Image
from transformers import AutoConfig, AutoProcessor

from prodmatch import store as db
from prodmatch.cli import main
from prodmatch.embed.batch import embed_products
from prodmatch.embed.encoders import Encoder
from prodmatch.embed.registry import MODEL_ALIASES, add_model, resolve_model_alias
from prodmatch.embed.worker import EmbedOptions, embed
from prodmatch.errors import ModelLoadError
from prodmatch.ingest.load import ingest_file

RUSSIAN = ["Кроссовки беговые мужские, чёрные", "Чехол для телефона, красный", "Электрический чайник 1,7 л"]
CHINESE = ["男款跑步运动鞋 黑色", "手机壳 红色 透明", "不锈钢电热水壶 1.7升"]


# Each form: its fixture, the model_type its config names and the tokenizer class AutoProcessor loads.
FORMS = {
    "fixed": ("tiny_siglip2_dir", "siglip", "GemmaTokenizer"),  # google/siglip2-base-patch16-224, -256, ...
    "naflex": (
        "tiny_siglip2_naflex_dir",
        "siglip2",
        "Siglip2Tokenizer",
    ),  # google/siglip2-base-patch16-naflex
}


@pytest.fixture(scope="module", params=sorted(FORMS))
def siglip2_dir(request) -> Path:
    return request.getfixturevalue(FORMS[request.param][0])


@pytest.fixture(scope="module")
def encoder(siglip2_dir) -> Encoder:
    return Encoder.load(str(siglip2_dir), precision="fp32")


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def photo(seed: int, size=(64, 48)) -> Image.Image:
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    )


@pytest.mark.parametrize("form", sorted(FORMS))
def test_checkpoint_loads_as_the_real_siglip2_does(form, request):
    fixture, model_type, tokenizer_class = FORMS[form]
    directory = request.getfixturevalue(fixture)
    assert AutoConfig.from_pretrained(directory).model_type == model_type
    # Both forms ship a tokenizer_config naming GemmaTokenizer; transformers reads NaFlex's as Siglip2Tokenizer.
    saved = json.loads((directory / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "GemmaTokenizer"
    tokenizer = AutoProcessor.from_pretrained(directory).tokenizer
    assert type(tokenizer).__name__ == tokenizer_class
    ids = tokenizer("кроссовки")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.bos_token_id not in ids


@pytest.mark.parametrize("text", RUSSIAN + CHINESE + ["Nike Air Zoom 42", "☃ 🎉 ﷺ"])
def test_every_script_gets_real_tokens_not_unknown(encoder, text):
    ids = encoder.tokenize([text])["input_ids"][0].tolist()
    tokenizer = encoder._tokenizer
    real = [i for i in ids if i not in (tokenizer.pad_token_id, tokenizer.eos_token_id)]
    assert len(real) >= len(text.replace(" ", "")) // 2
    assert tokenizer.unk_token_id not in ids
    # Characters outside the vocabulary fall back to their UTF-8 bytes, which decode back to the text.
    assert tokenizer.decode(real).replace(" ", "") == text.lower().replace(" ", "")


@pytest.mark.parametrize("titles", [RUSSIAN, CHINESE], ids=["russian", "chinese"])
def test_same_title_same_vector_different_titles_different_vectors(encoder, titles):
    first, second, third, first_again = encoder.embed_texts([*titles, titles[0]])
    assert cosine(first, first_again) >= 0.9999
    for a, b in [(first, second), (first, third), (second, third)]:
        assert cosine(a, b) < 0.99


def test_text_is_read_lower_cased_as_siglip2_was_trained(encoder):
    upper, lower, other = encoder.embed_texts(
        ["КРАСНЫЙ ЧЕХОЛ Nike", "красный чехол nike", "синий чехол nike"]
    )
    assert cosine(upper, lower) >= 0.9999
    assert cosine(lower, other) < 0.99


def test_translations_are_different_texts_to_random_weights(encoder):
    # A trained multilingual model puts translations close; random weights only show that the scripts differ.
    russian, chinese = encoder.embed_texts([RUSSIAN[0], CHINESE[0]])
    assert cosine(russian, chinese) < 0.99


def test_text_is_cut_at_64_tokens_with_the_end_of_text_token_kept(encoder):
    long = "Кроссовки беговые мужские 男款跑步运动鞋 " * 20
    tokens = encoder.tokenize([long, "короткий"])["input_ids"]
    assert tokens.shape == (2, 64)
    assert tokens[0, -1] == encoder._tokenizer.eos_token_id
    cut, longer = encoder.embed_texts([long, long + " совсем другой хвост 完全不同"])
    assert cosine(cut, longer) >= 0.9999


def test_batch_equals_one_at_a_time(encoder):
    texts = ["a", RUSSIAN[0], CHINESE[1], "x" * 300, CHINESE[2] + RUSSIAN[2]]
    np.testing.assert_allclose(
        encoder.embed_texts(texts), np.concatenate([encoder.embed_texts([t]) for t in texts]), atol=1e-5
    )
    images = [photo(seed, size=(40 + 17 * seed, 60)) for seed in range(4)]
    np.testing.assert_allclose(
        encoder.embed_images(images), np.concatenate([encoder.embed_images([i]) for i in images]), atol=1e-5
    )


def test_images_and_fused_vectors(encoder):
    images = [photo(1), photo(1), photo(2)]
    pixels = [encoder.preprocess_images([image]) for image in images] + [None]
    texts = [CHINESE[0], CHINESE[0], RUSSIAN[1], RUSSIAN[2]]
    vectors = embed_products(encoder, pixels, texts, fusion="concat", image_weight=0.5)
    assert vectors.image.shape == (4, 32) and vectors.fused.shape == (4, 64)
    assert cosine(vectors.image[0], vectors.image[1]) >= 0.9999
    assert cosine(vectors.image[0], vectors.image[2]) < 0.999
    assert cosine(vectors.fused[0], vectors.fused[1]) >= 0.9999
    assert not vectors.has_image(3) and vectors.has_text(3) and vectors.has_fused(3)
    np.testing.assert_allclose(np.linalg.norm(vectors.image[:3], axis=1), 1.0, atol=1e-5)


def test_naflex_keeps_each_images_aspect_ratio(tiny_siglip2_naflex_dir):
    encoder = Encoder.load(str(tiny_siglip2_naflex_dir), precision="fp32")
    wide, tall = photo(3, size=(90, 30)), photo(3, size=(90, 30)).transpose(Image.Transpose.ROTATE_90)
    inputs = encoder.image_inputs(encoder.preprocess_images([wide, tall, photo(4, size=(40, 40))]))
    assert inputs["spatial_shapes"].tolist() == [[2, 6], [6, 2], [4, 4]]  # patch grids within 16 patches
    assert inputs["pixel_attention_mask"].sum(dim=1).tolist() == [12, 12, 16]
    a, b, _ = encoder.embed_pixels(encoder.preprocess_images([wide, tall, photo(4)]))
    assert cosine(a, b) < 0.999
    assert encoder.image_side == 32  # a square image fills the 16-patch budget at 32x32


def test_bf16_agrees_with_fp32(siglip2_dir, encoder):
    half = Encoder.load(str(siglip2_dir), precision="bf16")
    assert half.precision == "bf16"
    images = [photo(seed) for seed in range(3)]
    for a, b in [
        (half.embed_texts(RUSSIAN + CHINESE), encoder.embed_texts(RUSSIAN + CHINESE)),
        (half.embed_images(images), encoder.embed_images(images)),
    ]:
        assert a.dtype == np.float32
        assert np.all(np.sum(a * b, axis=1) >= 0.99)


def test_worker_embeds_russian_and_chinese_products_and_similar_finds_them(settings, siglip2_dir, tmp_path):
    (tmp_path / "images").mkdir()
    titles = [title.replace(",", "") for title in RUSSIAN + CHINESE]  # write_items writes plain CSV
    for i in range(len(titles)):
        product_image(tmp_path / "images" / f"{i}.png", i * 5 + 1, fmt="PNG")
    shop = [(f"shop-{i}", title, f"{i}.png", 100 + i) for i, title in enumerate(titles)]
    rival = [(f"rival-{i}", title, f"{i}.png", 90 + i) for i, title in enumerate(titles)]  # the same products
    with db.connection(settings) as conn:
        model = add_model(conn, str(siglip2_dir), name="multilingual", precision="fp32")
        assert model.family in ("siglip", "siglip2") and model.dimension == 32
        for name, items in [("shop", shop), ("rival", rival)]:
            assert ingest_file(conn, write_items(tmp_path, name, items), name).loaded == len(titles)
    [summary] = embed(settings, EmbedOptions(batch_size=4))
    assert (summary.embedded, summary.image_errors, summary.failed) == (12, 0, 0)
    with db.connection(settings) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM prodmatch.embeddings WHERE model_id = %s AND status = 'done'"
            " AND coalesce(text_vector, text_half::vector) IS NOT NULL"
            " AND coalesce(fused_vector, fused_half::vector) IS NOT NULL",
            (model.id,),
        ).fetchone()[0]
        assert stored == 12
        for i, title in enumerate(titles):
            query = conn.execute(
                "SELECT p.id FROM prodmatch.products p JOIN prodmatch.catalogs c ON c.id = p.catalog_id"
                " WHERE c.name = 'shop' AND p.external_id = %s",
                (f"shop-{i}",),
            ).fetchone()[0]
            top = conn.execute(
                "SELECT external_id, title, fused_similarity FROM prodmatch.similar(%s, k => 1,"
                " model => 'multilingual', other_catalog => true)",
                (query,),
            ).fetchone()
            assert top[:2] == (f"rival-{i}", title)
            assert top[2] == pytest.approx(1.0, abs=1e-3)


def test_multilingual_alias_names_the_recommended_checkpoint(tmp_path, monkeypatch):
    assert (
        resolve_model_alias("multilingual")
        == MODEL_ALIASES["multilingual"]
        == "google/siglip2-base-patch16-256"
    )
    assert resolve_model_alias("./multilingual") == "./multilingual"  # a path is never an alias
    assert resolve_model_alias("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "multilingual").mkdir()
    assert resolve_model_alias("multilingual") == "multilingual"  # an existing folder of that name wins
    help_text = CliRunner().invoke(main, ["models", "add", "--help"]).output
    for alias, hub_id in MODEL_ALIASES.items():
        assert f"{alias} " in help_text and hub_id in help_text


def test_text_tokens_are_what_fine_tuning_gets(encoder):
    tokens = encoder.tokenize(CHINESE, torch.device("cpu"))
    assert list(tokens) == ["input_ids"] and tokens["input_ids"].shape == (3, 64)


def test_alias_offline_says_which_checkpoint_to_download(conn, monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE when imported, so patch the constant too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as raised:
        add_model(conn, "multilingual")
    message = str(raised.value)
    assert "'google/siglip2-base-patch16-256'" in message
    assert "huggingface-cli download google/siglip2-base-patch16-256 --local-dir DIR" in message
    assert conn.execute("SELECT count(*) FROM prodmatch.models").fetchone()[0] == 0
