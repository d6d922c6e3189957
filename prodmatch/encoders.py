"""A model's image and text towers behind one small interface.

`Encoder.load(source)` takes a Hugging Face hub id or a local directory holding a CLIP-family checkpoint (CLIP,
SigLIP, and anything else whose model has `get_image_features` and `get_text_features`), and gives back an
object that turns PIL images and strings into L2-normalised float32 vectors. It knows nothing of the database:
`images.py` hands it RGB images, `worker.py` and `matching.py` store and compare what it returns, and `fusion.py`
combines its image and text vectors. Precision ("fp32", "bf16", "fp16") is chosen once, at load time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hub_constants
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoProcessor
from transformers.utils import logging as hf_logging

from prodmatch.errors import ConfigError, ModelLoadError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Families whose text tower pools the last position and was trained on text padded to a fixed length.
_FIXED_LENGTH_FAMILIES = {"siglip", "siglip2"}


@dataclass(frozen=True)
class EncoderInfo:
    """What a loaded model is: where it came from and the shape of the vectors it makes."""

    source: str
    revision: str | None
    family: str
    dimension: int
    max_text_tokens: int


class Encoder:
    """Image and text towers of one model; `embed_*` return (n, dimension) float32 rows of unit length."""

    def __init__(
        self, processor, model, *, source: str, revision: str | None, device: torch.device, precision: str
    ) -> None:
        """Wrap a loaded processor and model (already on `device` in `precision`); most callers use `load`."""
        self._image_processor = processor.image_processor
        self._tokenizer = processor.tokenizer
        self._model = model
        self.device = device
        self.precision = precision
        self._dtype = _DTYPES[precision]
        self._family = model.config.model_type
        self._max_text_tokens = _max_text_tokens(self._tokenizer, model.config)
        self._image_size = _image_size(model.config)
        self._text_inputs = _text_inputs(self._tokenizer, self._family)
        # Fast tokenizers are not safe to share between threads (padding/truncation settings live in the Rust
        # object); image preprocessing needs no lock.
        self._tokenizer_lock = threading.Lock()
        # Ask the model for its output width rather than read it from the config, where the field differs by
        # family (projection_dim for CLIP, the text projection / hidden size for SigLIP).
        dimension = self._embed_texts(["a"]).shape[1]
        self.info = EncoderInfo(source, revision, self._family, dimension, self._max_text_tokens)

    @classmethod
    def load(
        cls,
        source: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        precision: str = "auto",
    ) -> Encoder:
        """Load a model from a hub id or a local directory, on `device` (default: CUDA if present, else CPU).

        `precision` is "auto", "fp32", "bf16" or "fp16"; see `resolve_precision` for what "auto" picks. Raises
        `ModelLoadError` when the model cannot be found, downloaded or used, and `ConfigError` for a bad
        device or precision.
        """
        torch_device = resolve_device(device)
        resolved = resolve_precision(precision, torch_device)
        processor, model = load_processor_and_model(source, revision=revision, dtype=_DTYPES[resolved])
        model = model.to(torch_device).eval()
        return cls(
            processor, model, source=source, revision=revision, device=torch_device, precision=resolved
        )

    def preprocess_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Resize, crop and normalise RGB images into the model's `pixel_values` (float32, on the CPU).

        Safe to call from a loader thread while another thread runs `embed_pixels`.
        """
        if not images:
            return torch.empty((0, 3, *self._image_size), dtype=torch.float32)
        return self._image_processor(images=images, return_tensors="pt")["pixel_values"]

    def embed_pixels(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Image vectors for `pixel_values` from `preprocess_images`: (n, dimension) float32, unit length."""
        if len(pixel_values) == 0:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        with torch.inference_mode():
            pixel_values = pixel_values.to(self.device, dtype=self._dtype)
            return _unit_rows(self._model.get_image_features(pixel_values=pixel_values))

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """Image vectors for RGB images: (n, dimension) float32, unit length."""
        return self.embed_pixels(self.preprocess_images(images))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text vectors: (n, dimension) float32, unit length; texts longer than the model takes are truncated."""
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        return self._embed_texts(texts)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        padding = "max_length" if self._family in _FIXED_LENGTH_FAMILIES else "longest"
        with self._tokenizer_lock:
            tokens = self._tokenizer(
                list(texts),
                padding=padding,
                truncation=True,
                max_length=self._max_text_tokens,
                return_tensors="pt",
            )
        inputs = {name: tokens[name].to(self.device) for name in self._text_inputs if name in tokens}
        with torch.inference_mode():
            return _unit_rows(self._model.get_text_features(**inputs))

    def __repr__(self) -> str:
        return f"Encoder({self.info.source!r}, family={self.info.family}, device={self.device}, precision={self.precision})"


def resolve_device(device: str | None) -> torch.device:
    """The torch device for a name ("cpu", "cuda", "cuda:1", "mps"); None means CUDA when available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from error
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if torch_device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} requested but MPS is not available; use --device cpu")
    return torch_device


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn a precision setting into "fp32", "bf16" or "fp16" for `device`.

    "auto" means: on CUDA, bf16 where the GPU supports it, else fp16; on a CPU with native bf16 instructions
    (AVX512-BF16 or AMX), bf16, which on a 2-core Zen 4 embeds ViT-B/32 images about twice as fast as fp32 with
    vectors at cosine > 0.9999 to the fp32 ones; on any other CPU (where bf16 is emulated and slower), fp32.
    An explicit "fp32" or "bf16" is always honoured; "fp16" needs a GPU.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return _auto_precision(device)
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision fp16 is not supported on the CPU; use bf16 or fp32")
    return precision


def load_processor_and_model(source: str, *, revision: str | None = None, dtype: torch.dtype = torch.float32):
    """The processor (image processor + tokenizer) and model for `source`, as transformers loads them.

    A local directory is read as is (`revision` applies to hub ids only). A hub id is looked up in the local
    Hugging Face cache first and only then on the hub, so a cached model loads without network delays. Raises `ModelLoadError` with a message that
    says what failed and how to pass a local directory instead.
    """
    if _looks_like_path(source):
        directory = Path(source).expanduser()
        if not directory.is_dir():
            raise ModelLoadError(
                f"could not load model {source!r}: there is no such directory. Pass a local directory that "
                f"holds a downloaded model (config.json, weights, tokenizer), or a hub id such as "
                f"openai/clip-vit-base-patch32"
            )
        if not (directory / "config.json").is_file():
            raise ModelLoadError(
                f"could not load model {source!r}: the directory has no config.json, so it is not a Hugging Face "
                f"model. Pass the local directory that `huggingface-cli download MODEL --local-dir DIR` made"
            )
        return _load_or_explain(str(directory), None, dtype, local_files_only=True)
    try:
        return _load(source, revision, dtype, local_files_only=True)
    except ModelLoadError:
        raise
    except Exception as error:
        if not _chain_has(error, "LocalEntryNotFoundError") or _hub_offline():
            raise _explain(source, revision, error) from error
    return _load_or_explain(source, revision, dtype, local_files_only=False)


def _load_or_explain(source: str, revision: str | None, dtype: torch.dtype, *, local_files_only: bool):
    try:
        return _load(source, revision, dtype, local_files_only=local_files_only)
    except ModelLoadError:
        raise
    except Exception as error:
        raise _explain(source, revision, error) from error


def _load(source: str, revision: str | None, dtype: torch.dtype, *, local_files_only: bool):
    hf_logging.disable_progress_bar()  # "Loading weights" bars on every start say nothing to our users
    options = {"revision": revision, "local_files_only": local_files_only}
    config = AutoConfig.from_pretrained(source, **options)
    _check_family(source, config)
    # dtype explicitly: transformers 5 defaults to "auto", i.e. whatever dtype the checkpoint was saved in.
    model = AutoModel.from_pretrained(source, dtype=dtype, **options)
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ModelLoadError(_not_image_text(source, config.model_type))
    processor = AutoProcessor.from_pretrained(source, **options)
    if not (hasattr(processor, "image_processor") and hasattr(processor, "tokenizer")):
        raise ModelLoadError(
            f"could not load model {source!r}: its processor ({type(processor).__name__}) lacks an image "
            f"processor or a tokenizer; pass a local directory with preprocessor_config.json and tokenizer files"
        )
    return processor, model


def _check_family(source: str, config) -> None:
    if config.model_type == "siglip2":
        raise ModelLoadError(
            f"could not load model {source!r}: SigLIP 2 NaFlex (variable resolution) models are not supported; "
            f"use a fixed-resolution SigLIP 2 checkpoint such as google/siglip2-base-patch16-224"
        )
    if getattr(config, "text_config", None) is None or getattr(config, "vision_config", None) is None:
        raise ModelLoadError(_not_image_text(source, config.model_type))


def _not_image_text(source: str, model_type: str) -> str:
    return (
        f"could not load model {source!r}: it is a {model_type!r} model, not an image-text model with image "
        f"and text towers; use a CLIP or SigLIP model such as openai/clip-vit-base-patch32"
    )


def _explain(source: str, revision: str | None, error: BaseException) -> ModelLoadError:
    """A ModelLoadError that says why `source` did not load and how to get it as a local directory."""
    at = f" at revision {revision!r}" if revision else ""
    download = (
        f"Download it on a machine with internet (`huggingface-cli download {source} --local-dir DIR`) "
        f"and pass the local directory: prodmatch models add DIR"
    )
    if _chain_has(error, "RevisionNotFoundError"):
        reason = f"the hub has no revision {revision!r} of it. Check the branch, tag or commit"
    elif _chain_has(error, "GatedRepoError"):
        reason = (
            f"it is gated on the hub: accept its terms there and log in (`huggingface-cli login`). {download}"
        )
    elif _chain_has(error, "RepositoryNotFoundError"):
        reason = (
            "there is no such model on the Hugging Face hub (or it is private: log in with `huggingface-cli "
            "login`). Check the name, or pass a local directory: prodmatch models add DIR"
        )
    elif _chain_has(error, "OfflineModeIsEnabled") or (
        _chain_has(error, "LocalEntryNotFoundError") and _hub_offline()
    ):
        reason = f"hub access is off (HF_HUB_OFFLINE) and it is not in the local cache{at}. {download}"
    elif _chain_has(error, "LocalEntryNotFoundError", "ConnectError", "TimeoutException", "ConnectionError"):
        reason = f"the Hugging Face hub is unreachable and it is not in the local cache{at}. {download}"
    elif _chain_has(error, "EntryNotFoundError"):
        reason = f"a file it needs is missing ({_first_line(error)}). Pass a complete local directory instead"
    else:
        reason = f"{_first_line(error)}. If the model is on disk, pass its local directory: prodmatch models add DIR"
    return ModelLoadError(f"could not load model {source!r}: {reason}")


def _looks_like_path(source: str) -> bool:
    """True for a directory that exists or a string no hub id can be ("/x", "./x", "~/x", "a/b/c", "C:\\x")."""
    if os.path.exists(os.path.expanduser(source)):
        return True
    return (
        source.startswith(("/", ".", "~"))
        or source.count("/") > 1
        or "\\" in source
        or (len(source) > 1 and source[1] == ":")
    )


def _hub_offline() -> bool:
    return bool(hub_constants.is_offline_mode())


def _chain_has(error: BaseException, *names: str) -> bool:
    """True when `error` or any exception it was raised from has a class (or base class) named in `names`."""
    return any(cls.__name__ in names for link in _chain(error) for cls in type(link).__mro__)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0].rstrip(".") if text else type(error).__name__


def _auto_precision(device: torch.device) -> str:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and _cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def _cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX) through oneDNN."""
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.backends.mkldnn.is_available())
    except (AttributeError, RuntimeError):  # private helpers; missing in some torch builds
        return False


def _unit_rows(output) -> np.ndarray:
    """L2-normalised float32 rows from a `get_*_features` result (a tensor, a ModelOutput or a tuple)."""
    if isinstance(output, torch.Tensor):
        vectors = output
    elif getattr(output, "pooler_output", None) is not None:
        # transformers 5: a BaseModelOutputWithPooling whose pooler_output is the projected embedding.
        vectors = output.pooler_output
    else:
        vectors = output[1]
    return F.normalize(vectors.float(), dim=-1).cpu().numpy()


def _image_size(config) -> tuple[int, int]:
    size = config.vision_config.image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _max_text_tokens(tokenizer, config) -> int:
    """The longest text the model takes: its position table, or the tokenizer's limit if that is shorter."""
    positions = config.text_config.max_position_embeddings
    tokenizer_limit = getattr(tokenizer, "model_max_length", None) or positions
    return int(min(positions, tokenizer_limit))


def _text_inputs(tokenizer, family: str) -> list[str]:
    """The tokenizer outputs to pass to the text tower.

    SigLIP was trained attending to its padding (no attention mask) and pools the last, padded position, so it
    gets input_ids only, although transformers 5's SiglipTokenizer also returns an attention mask.
    """
    if family in _FIXED_LENGTH_FAMILIES:
        return ["input_ids"]
    return [name for name in tokenizer.model_input_names if name in ("input_ids", "attention_mask")]
