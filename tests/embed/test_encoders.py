"""Encoder: tiny random CLIP and SigLIP checkpoints loaded through the same from_pretrained path as real ones."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, BertConfig, BertModel, CLIPImageProcessorPil

from prodmatch.embed.encoders import Encoder, resolve_precision
from prodmatch.errors import ConfigError, ModelLoadError
from prodmatch.hardware import resolve_device

# Each tiny model: its fixture, the family its config names (SigLIP 2's fixed-resolution checkpoints are SigLIP
# models with a Gemma tokenizer; its NaFlex ones are "siglip2") and the text positions it takes.
MODELS = {
    "clip": ("tiny_clip_dir", "clip", 77),
    "siglip": ("tiny_siglip_dir", "siglip", 64),
    "siglip2": ("tiny_siglip2_dir", "siglip", 64),
    "siglip2-naflex": ("tiny_siglip2_naflex_dir", "siglip2", 64),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def encoder(request) -> Encoder:
    directory = request.getfixturevalue(MODELS[request.param][0])
    return Encoder.load(str(directory), precision="fp32")


def png_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """An RGB image decoded from PNG bytes, like one read from a catalogue."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return decode(encode(Image.fromarray(pixels)))


def encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_info_describes_the_model(encoder, request):
    _, family, positions = MODELS[request.node.callspec.params["encoder"]]
    assert encoder.info.family == family
    assert encoder.info.dimension == 32
    assert encoder.info.max_text_tokens == positions
    assert encoder.info.revision is None
    assert encoder.precision == "fp32"
    assert encoder.device == torch.device("cpu")


def test_vectors_are_unit_length_float32(encoder):
    vectors = [
        encoder.embed_images(
            [png_image(1), png_image(2, size=(300, 120)), Image.new("RGB", (10, 10), "red")]
        ),
        encoder.embed_texts(["Red running shoe", "Кроссовки Nike Air, размер 42", "", "!!!"]),
    ]
    for batch in vectors:
        assert batch.dtype == np.float32
        assert batch.shape[1] == encoder.info.dimension
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_same_input_same_vector_different_input_different_vector(encoder):
    data = encode(png_image(7))
    same_a, same_b, other = encoder.embed_images([decode(data), decode(data), png_image(8)])
    assert cosine(same_a, same_b) >= 0.999
    assert cosine(same_a, other) < 0.999

    shoe, shoe_again, case, russian = encoder.embed_texts(
        ["red leather shoe", "red leather shoe", "phone case", "кожаная туфля"]
    )
    assert cosine(shoe, shoe_again) >= 0.999
    assert cosine(shoe, case) < 0.99
    assert cosine(shoe, russian) < 0.99


def test_long_description_is_truncated_not_fatal(encoder):
    long_text = "Очень длинное описание товара, very long product description. " * 90
    assert len(long_text) > 5000
    longer = long_text + "extra words past the model's limit " * 20
    vectors = encoder.embed_texts([long_text, longer, "short"])
    assert vectors.shape == (3, encoder.info.dimension)
    # Both are cut at the model's limit, so only the shared prefix counts.
    assert cosine(vectors[0], vectors[1]) >= 0.9999


def test_batch_gives_the_same_vectors_as_one_at_a_time(encoder):
    images = [png_image(seed, size=(40 + 10 * seed, 60)) for seed in range(4)]
    texts = ["a", "blue cotton shirt, size M", "Чехол для телефона " * 3, "x" * 500]
    batch = encoder.embed_images(images)
    single = np.concatenate([encoder.embed_images([image]) for image in images])
    np.testing.assert_allclose(batch, single, atol=1e-4)
    batch = encoder.embed_texts(texts)
    single = np.concatenate([encoder.embed_texts([text]) for text in texts])
    np.testing.assert_allclose(batch, single, atol=1e-4)


def test_empty_lists_give_empty_arrays(encoder):
    assert encoder.embed_texts([]).shape == (0, encoder.info.dimension)
    assert encoder.embed_images([]).shape == (0, encoder.info.dimension)
    assert encoder.embed_texts([]).dtype == np.float32


def test_preprocessing_in_a_loader_thread_matches(encoder):
    batches = [[png_image(seed), png_image(seed + 100)] for seed in range(4)]
    expected = [encoder.embed_images(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pixels = list(pool.map(encoder.preprocess_images, batches))
    assert pixels[0].dtype == torch.float32
    for pixel_values, vectors in zip(pixels, expected, strict=True):
        np.testing.assert_allclose(encoder.embed_pixels(pixel_values), vectors, atol=1e-6)


def photo_like(seed: int, size: tuple[int, int]) -> Image.Image:
    """Colour blocks with sharp edges plus a little noise, like a product photo."""
    rng = np.random.default_rng(seed)
    blocks = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.NEAREST
    )
    grain = rng.integers(-20, 21, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(blocks, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


ODD_SIZES = [(32, 32), (33, 32), (31, 45), (17, 40), (96, 96), (800, 800), (1000, 333), (224, 300), (7, 7)]


def test_preprocessing_gives_exactly_the_processors_pixel_values(encoder):
    directory = str(encoder.info.source)
    processor = AutoProcessor.from_pretrained(directory).image_processor
    images = [photo_like(seed, size) for seed, size in enumerate(ODD_SIZES)]
    expected = processor(images=images, return_tensors="pt")["pixel_values"]

    def pixel_values(images: list[Image.Image]) -> torch.Tensor:  # what the image tower is given
        return encoder.image_inputs(encoder.preprocess_images(images))["pixel_values"]

    got = pixel_values(images)
    assert got.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # one at a time too, as the worker's loader threads call it
    for image, row in zip(images, expected, strict=True):
        torch.testing.assert_close(pixel_values([image])[0], row, rtol=0, atol=0)


@pytest.mark.parametrize(
    "settings",
    [
        {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}},  # openai CLIP
        {
            "size": {"shortest_edge": 256},
            "crop_size": {"height": 224, "width": 224},
        },  # resize, then crop less
        {"size": {"shortest_edge": 224}, "crop_size": {"height": 200, "width": 180}, "resample": 2},
        {"size": {"shortest_edge": 64}, "do_center_crop": False},
        {"size": {"height": 224, "width": 224}, "do_center_crop": False, "image_mean": 0.5, "image_std": 0.5},
        {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}, "do_rescale": False},
        {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}, "do_normalize": False},
    ],
)
def test_fast_preprocessing_matches_processor_configurations(settings):
    from prodmatch.embed.encoders import _FastPixels

    processor = CLIPImageProcessorPil(**settings)
    fast = _FastPixels.for_processor(processor)
    assert fast is not None
    for seed, size in enumerate([(800, 800), (640, 480), (300, 1000), (257, 256), (225, 224)]):
        image = photo_like(seed, size)
        expected = processor(images=[image], return_tensors="np")["pixel_values"][0]
        np.testing.assert_array_equal(fast(image), expected)


def test_fast_preprocessing_leaves_other_processors_alone():
    from prodmatch.embed.encoders import _FastPixels

    padded = CLIPImageProcessorPil(
        size={"shortest_edge": 64}, do_pad=True, pad_size={"height": 80, "width": 80}
    )
    assert _FastPixels.for_processor(padded) is None
    longest = CLIPImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 100}, do_center_crop=False)
    assert _FastPixels.for_processor(longest) is None
    # an image smaller than the crop is padded by the processor: the fast path hands it back
    fast = _FastPixels.for_processor(
        CLIPImageProcessorPil(do_resize=False, crop_size={"height": 40, "width": 40})
    )
    assert fast is not None and fast(photo_like(0, (60, 30))) is None


def test_image_side_is_what_preprocessing_resizes_to(encoder):
    assert encoder.image_side == 32


def test_bf16_vectors_agree_with_fp32(tiny_clip_dir):
    half = Encoder.load(str(tiny_clip_dir), precision="bf16")
    full = Encoder.load(str(tiny_clip_dir), precision="fp32")
    assert half.precision == "bf16"
    images = [png_image(seed) for seed in range(3)]
    texts = ["red shoe", "phone case", "синий чехол"]
    for a, b in [
        (half.embed_images(images), full.embed_images(images)),
        (half.embed_texts(texts), full.embed_texts(texts)),
    ]:
        assert a.dtype == np.float32
        assert np.all(np.sum(a * b, axis=1) >= 0.99)


def test_auto_precision_resolves(tiny_siglip_dir):
    encoder = Encoder.load(str(tiny_siglip_dir))
    assert encoder.precision in ("fp32", "bf16")
    assert encoder.embed_texts(["red shoe"]).shape == (1, 32)


@pytest.mark.parametrize("precision", ["fp64", "half", ""])
def test_unknown_precision_is_a_config_error(precision):
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision(precision, torch.device("cpu"))


def test_fp16_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_device("cuda")


def test_missing_directory_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such directory") as raised:
        Encoder.load(str(tmp_path / "no-such-model"))
    assert "local directory" in str(raised.value)


def test_directory_without_a_model_raises_model_load_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="config.json") as raised:
        Encoder.load(str(tmp_path))
    assert "local directory" in str(raised.value)


def test_text_only_model_raises_model_load_error(tmp_path):
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not an image-text model"):
        Encoder.load(str(tmp_path))


def test_unknown_hub_id_offline_raises_model_load_error(monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE when imported, so patch the constant too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as raised:
        Encoder.load("prodmatch-tests/no-such-model")
    message = str(raised.value)
    assert "prodmatch-tests/no-such-model" in message
    assert "not in the local cache" in message
    assert "local directory" in message
    assert "huggingface-cli download prodmatch-tests/no-such-model --local-dir DIR" in message


def test_keep_freed_memory_tunes_glibc_once():
    from prodmatch.embed.encoders import keep_freed_memory

    assert keep_freed_memory() is True  # Linux with glibc, as CI runs
    assert keep_freed_memory() is True  # idempotent


def test_unreachable_hub_is_reported_in_seconds(monkeypatch):
    # A closed local port (no DNS involved, so no resolver timeouts): the hub client alone would retry for ~25 s.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:1")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as raised:
        Encoder.load("prodmatch-tests/no-such-model")
    assert time.monotonic() - started < 15  # not the hub client's ~25 s of retries; margin for a busy machine
    message = str(raised.value)
    assert "hub is unreachable" in message and "not in the local cache" in message
    assert "huggingface-cli download prodmatch-tests/no-such-model --local-dir DIR" in message
