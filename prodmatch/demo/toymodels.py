"""Random-weight CLIP, SigLIP and SigLIP 2 checkpoints, built offline, for the tests, the demo and the benchmarks.

Each builder writes a directory laid out like a checkpoint downloaded from the Hugging Face hub (`config.json`,
`model.safetensors`, `processor_config.json` / `preprocessor_config.json`, `tokenizer.json`,
`tokenizer_config.json`), so `AutoModel.from_pretrained(dir)` and `AutoProcessor.from_pretrained(dir)` — and
therefore `prodmatch.encoders.Encoder.load(dir)` — load it exactly as they load a real model. Nothing is
downloaded: the tokenizer is a small vocabulary (every byte for CLIP, ASCII and Cyrillic characters for SigLIP,
a Gemma-style byte-fallback vocabulary with ASCII, Cyrillic and common Chinese characters for SigLIP 2) built with
the `tokenizers` library, and the weights are random but seeded, so the same seed gives the same vectors while
different images or texts give different vectors. The vectors mean nothing; use the models to test plumbing and
to time the real architectures ("vit-b-32" is openai/clip-vit-base-patch32's shape, "base-patch16-256"
google/siglip2-base-patch16-256's). Their `config.json` says so (`prodmatch_random_weights: true`), and a model
registered from one carries `random_weights` in its settings.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    GemmaTokenizer,
    Siglip2Config,
    Siglip2ImageProcessorPil,
    Siglip2Model,
    Siglip2Processor,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    SiglipProcessor,
    TokenizersBackend,
)
from transformers.utils import logging as transformers_logging

from prodmatch.embed.registry import RANDOM_WEIGHTS_FLAG
from prodmatch.errors import ConfigError

CLIP_SIZES = ("tiny", "vit-b-32")
SIGLIP_SIZES = ("tiny",)
SIGLIP2_SIZES = ("tiny", "tiny-naflex", "base-patch16-224", "base-patch16-256", "base-patch16-naflex")

CLIP_TEXT_POSITIONS = 77
SIGLIP_TEXT_POSITIONS = 64

# Cyrillic letters the toy tokenizers know as whole symbols (Russian, Ukrainian, Belarusian; lower case, as both
# tokenizers lower-case their input).
_CYRILLIC_LOWER = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґў"

# Chinese characters the toy SigLIP 2 tokenizer knows as whole symbols: the commonest ones and those of everyday
# product titles (colours, materials, clothes, phones, kitchen). Any other character still gets distinct tokens,
# its UTF-8 bytes, as in Gemma's own vocabulary (byte fallback).
_CHINESE = (
    "的一是不了人我在有他这中大来上个国和也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天"
    "如然作方成者多日都三小二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"
    "黑白红蓝绿黄紫灰粉金银色款新男女童装鞋靴袜衣裤裙衫帽包袋手机壳屏电脑耳板充线器套件号码尺寸米厘克升"
    "皮棉麻丝毛布木铁钢塑料玻璃陶瓷锅碗杯壶刀叉勺盘桌椅床灯表钟镜盒瓶水茶油酒奶糖"
    "运动跑步休闲正品官方旗舰店限量版高低长短宽窄厚薄轻重快慢温冷热防滑透气保修"
)

# SigLIP 2 checkpoints' shapes: the vision tower's image side for each real fixed-resolution size (ViT-B/16
# towers with Gemma's 256k vocabulary and 64 text positions: SiglipConfig's defaults otherwise). The NaFlex
# checkpoint has the same towers, fed up to 256 patches of 16x16 at each image's own aspect ratio.
_SIGLIP2_IMAGE_SIDES = {"base-patch16-224": 224, "base-patch16-256": 256}
_GEMMA_VOCAB = 256_000
_TINY_NAFLEX = {"patch_size": 8, "num_patches": 16}  # up to 16 patches of 8x8: a 32x32 square, as "tiny"

# Tower shapes. "tiny" is a few hundred KB and runs in milliseconds; "vit-b-32" is CLIPConfig's defaults, i.e.
# exactly openai/clip-vit-base-patch32 (151 M parameters, about 600 MB in float32).
_TINY_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
_TINY_IMAGE = {"image_size": 32, "patch_size": 8}
_CLIP_VIT_B_32_VOCAB = 49408


def build_clip(path: Path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight CLIP checkpoint (model, image processor, tokenizer) to `path` and return it.

    `size` is "tiny" (2 layers of width 32, 32x32 images, 32-dimensional vectors) or "vit-b-32" (the
    openai/clip-vit-base-patch32 architecture: 224x224 images, 512-dimensional vectors). Text is cut at 77
    positions, as in every CLIP.
    """
    _check_size(size, CLIP_SIZES, "CLIP")
    path = Path(path)
    tokenizer = _clip_tokenizer()
    special_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if size == "tiny":
        image_size = _TINY_IMAGE["image_size"]
        config = CLIPConfig(
            text_config={**_TINY_TOWER, "vocab_size": len(tokenizer), "projection_dim": 32, **special_ids},
            vision_config={**_TINY_TOWER, **_TINY_IMAGE, "projection_dim": 32},
            projection_dim=32,
        )
    else:
        # Keep the real vocabulary size so the parameter count, file size and memory match the real model;
        # the toy tokenizer simply never produces the upper ids.
        image_size = 224
        config = CLIPConfig(text_config={"vocab_size": _CLIP_VIT_B_32_VOCAB, **special_ids}, vision_config={})
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    model = _seeded(CLIPModel, config, seed)
    return _save(path, model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_siglip(path: Path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight SigLIP checkpoint (model, image processor, tokenizer) to `path` and return it.

    `size` is "tiny" (2 layers of width 32, 32x32 images, 32-dimensional vectors). As in real SigLIP, text is
    padded to a fixed 64 positions (`padding="max_length"`) because the text tower pools the last position.
    """
    _check_size(size, SIGLIP_SIZES, "SigLIP")
    path = Path(path)
    tokenizer = _siglip_tokenizer()
    config = SiglipConfig(
        text_config={
            **_TINY_TOWER,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": SIGLIP_TEXT_POSITIONS,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": None,
        },
        vision_config={**_TINY_TOWER, **_TINY_IMAGE},
    )
    image_size = _TINY_IMAGE["image_size"]
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    model = _seeded(SiglipModel, config, seed)
    _sharpen_text_attention(model)
    return _save(path, model, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_siglip2(path: Path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight SigLIP 2 checkpoint (model, image processor, Gemma tokenizer) to `path`; return it.

    Laid out like google/siglip2-base-patch16-224 / -256 on the hub: a SigLIP model (model_type "siglip": the
    fixed-resolution SigLIP 2 checkpoints reuse SigLIP's architecture) with a Gemma tokenizer (tokenizer_class
    "GemmaTokenizer": byte-fallback BPE, no BOS, an EOS at the end, text cut at 64 tokens). `size` is "tiny"
    (2 layers of width 32, 32x32 images, 32-dimensional vectors) or "base-patch16-224" / "base-patch16-256" (the
    real ViT-B/16 towers and 256k vocabulary: 768-dimensional vectors, about 1.5 GB in float32; for timing).
    "tiny-naflex" and "base-patch16-naflex" are laid out like google/siglip2-base-patch16-naflex instead: a
    SigLIP 2 model (model_type "siglip2") whose image processor keeps each image's aspect ratio (NaFlex).
    """
    _check_size(size, SIGLIP2_SIZES, "SigLIP 2")
    if size.endswith("naflex"):
        return _build_siglip2_naflex(Path(path), size, seed)
    path = Path(path)
    tokenizer = _gemma_tokenizer()
    special_ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    if size == "tiny":
        image_size = _TINY_IMAGE["image_size"]
        config = SiglipConfig(
            text_config={
                **_TINY_TOWER,
                "vocab_size": len(tokenizer),
                "max_position_embeddings": SIGLIP_TEXT_POSITIONS,
                **special_ids,
            },
            vision_config={**_TINY_TOWER, **_TINY_IMAGE},
        )
    else:
        # The real vocabulary size, so parameters, memory and the embedding look-up match the real model; the toy
        # tokenizer simply never produces the upper ids.
        image_size = _SIGLIP2_IMAGE_SIDES[size]
        config = SiglipConfig(
            text_config={"vocab_size": _GEMMA_VOCAB, **special_ids},
            vision_config={"image_size": image_size, "patch_size": 16},
        )
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    model = _seeded(SiglipModel, config, seed)
    if size == "tiny":
        _sharpen_text_attention(model)
    return _save(path, model, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer))


def _build_siglip2_naflex(path: Path, size: str, seed: int) -> Path:
    tokenizer = _gemma_tokenizer()
    text = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    if size == "tiny-naflex":
        text.update(_TINY_TOWER, vocab_size=len(tokenizer), max_position_embeddings=SIGLIP_TEXT_POSITIONS)
        vision = {**_TINY_TOWER, **_TINY_NAFLEX}
    else:
        text["vocab_size"] = _GEMMA_VOCAB
        vision = {"patch_size": 16, "num_patches": 256}
    config = Siglip2Config(text_config=text, vision_config=vision)
    image_processor = Siglip2ImageProcessorPil(
        patch_size=vision["patch_size"], max_num_patches=vision["num_patches"]
    )
    model = _seeded(Siglip2Model, config, seed)
    if size == "tiny-naflex":
        _sharpen_text_attention(model)
    return _save(path, model, Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer))


def _check_size(size: str, sizes: tuple[str, ...], family: str) -> None:
    if size not in sizes:
        raise ConfigError(f"unknown toy {family} size {size!r}; choose one of: {', '.join(sizes)}")


def _seeded(model_class: type, config: object, seed: int) -> torch.nn.Module:
    """Build the model with its weights drawn from `seed`, leaving the caller's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.eval()


def _sharpen_text_attention(model: SiglipModel | Siglip2Model, factor: float = 3.0) -> None:
    """Scale the text tower's query and key projections so that different texts get clearly different vectors.

    SigLIP pools the last position of text padded to 64 tokens. At random initialisation attention is nearly
    uniform, so that position sees mostly padding and every text gets almost the same vector (cosine ~0.9998
    between "red shoe" and "blue shoe"); with sharper attention it is ~0.7, while near-identical texts stay close.
    """
    with torch.no_grad():
        for layer in model.text_model.encoder.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.k_proj.weight.mul_(factor)


def _save(path: Path, model: torch.nn.Module, processor: object) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    verbosity = transformers_logging.get_verbosity()
    # Saving diffs the config against SiglipConfig()'s defaults, whose own token ids draw a spurious warning.
    transformers_logging.set_verbosity_error()
    try:
        model.save_pretrained(path)
        processor.save_pretrained(path)
        # transformers 5 keeps the image processor inside processor_config.json; hub checkpoints carry it as
        # preprocessor_config.json. Write both, like a downloaded checkpoint re-saved with transformers 5.
        processor.image_processor.save_pretrained(path)
    finally:
        transformers_logging.set_verbosity(verbosity)
    # Say so in the checkpoint: registering it records `random_weights` in the model's settings, and the
    # commands that would rank by its meaningless spaces by default (similar, search, dedupe) do not.
    config = path / "config.json"
    config.write_text(
        json.dumps({**json.loads(config.read_text()), RANDOM_WEIGHTS_FLAG: True}, indent=2) + "\n"
    )
    return path


def _clip_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE over a tiny vocabulary: every byte, plus one merge per Cyrillic letter.

    Any text tokenizes without unknown tokens (each byte is a symbol, with and without CLIP's `</w>` end-of-word
    mark); the merges make each lower-case Cyrillic letter one token instead of two bytes.
    """
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for symbol in byte_symbols + [s + "</w>" for s in byte_symbols]:
        vocab[symbol] = len(vocab)
    to_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    merges: list[tuple[str, str]] = []
    for letter in _CYRILLIC_LOWER:
        first, second = to_bytes.pre_tokenize_str(letter)[0][0]
        for end in ("", "</w>"):
            merges.append((first, second + end))
            vocab.setdefault(first + second + end, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_TEXT_POSITIONS)


def _siglip_tokenizer() -> TokenizersBackend:
    """A SentencePiece-style unigram tokenizer (lower-cased, `▁` marks a word start, `</s>` at the end).

    Built directly with `tokenizers` because SigLIP's own tokenizer needs a trained `spiece.model` and the
    sentencepiece package; saved with tokenizer_class "TokenizersBackend", which AutoTokenizer loads as is.
    """
    symbols = string.ascii_lowercase + string.digits + string.punctuation + _CYRILLIC_LOWER
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    pieces += [("▁" + symbol, -1.0) for symbol in symbols] + [(symbol, -2.0) for symbol in symbols]
    backend = Tokenizer(Unigram(pieces, unk_id=2))
    backend.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Lowercase(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
        ]
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return TokenizersBackend(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=SIGLIP_TEXT_POSITIONS,
    )


def _gemma_tokenizer() -> GemmaTokenizer:
    """A Gemma tokenizer as SigLIP 2 ships it, over a small vocabulary: byte fallback plus whole characters.

    Gemma's BPE with its byte-fallback tokens `<0x00>`..`<0xFF>` (so no text is ever unknown), whole-symbol tokens
    for ASCII, Cyrillic and common Chinese characters, and one merge per symbol for its word-initial form (`▁` +
    symbol), as Gemma marks a word start. Special tokens sit at Gemma's ids (`<pad>` 0, `<eos>` 1, `<bos>` 2,
    `<unk>` 3); as in SigLIP 2's tokenizer_config, no BOS is added and an EOS ends every text.
    """
    cyrillic = _CYRILLIC_LOWER + _CYRILLIC_LOWER.upper()
    symbols = dict.fromkeys(string.ascii_letters + string.digits + string.punctuation + cyrillic + _CHINESE)
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    vocab["▁"] = len(vocab)
    for symbol in symbols:
        vocab[symbol] = len(vocab)
    merges = []
    for symbol in symbols:
        vocab["▁" + symbol] = len(vocab)
        merges.append(("▁", symbol))
    return GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        add_bos_token=False,
        add_eos_token=True,
        model_max_length=SIGLIP_TEXT_POSITIONS,
    )
