"""A model's image and text towers behind one small interface.

`Encoder.load(source)` takes a Hugging Face hub id or a local directory holding a CLIP-family checkpoint (CLIP,
SigLIP, SigLIP 2 in its fixed-resolution and NaFlex forms, and anything else whose model has `get_image_features`
and `get_text_features`), and gives back an object that turns PIL images and strings into L2-normalised float32
vectors. It knows nothing of the database:
`embed.images` hands it RGB images, `embed.batch` turns products into its vectors for the worker and fine-tuning,
`match` compares them, and `embed.fusion` combines its image and text vectors. The device and precision probes
are `prodmatch.hardware`'s. Precision ("fp32", "bf16", "fp16") is chosen once, at load time.
"""

from __future__ import annotations

import ctypes
import math
import os
import socket
import threading
import urllib.parse
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
from prodmatch.hardware import auto_precision, resolve_device

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Families whose text tower pools the last position and was trained on text padded to a fixed length.
_FIXED_LENGTH_FAMILIES = {"siglip", "siglip2"}
# Families whose image tower takes variable-resolution patches (NaFlex) with a patch mask and each image's grid.
_NAFLEX_FAMILIES = {"siglip2"}


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
        self._naflex = self._family in _NAFLEX_FAMILIES
        self._image_size = _image_size(model.config, self._image_processor)
        self._text_inputs = _text_inputs(self._tokenizer, self._family)
        self._fast_pixels = _FastPixels.for_processor(self._image_processor)
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
        if torch_device.type == "cpu":
            keep_freed_memory()
        processor, model = load_processor_and_model(source, revision=revision, dtype=_DTYPES[resolved])
        model = model.to(torch_device).eval()
        return cls(
            processor, model, source=source, revision=revision, device=torch_device, precision=resolved
        )

    def preprocess_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Resize, crop and normalise RGB images into the model's `pixel_values` (float32, on the CPU).

        One row per image, so rows of separate calls concatenate into a batch. For a NaFlex model a row packs the
        image's patches with their mask and grid (see `image_inputs`). Safe to call from a loader thread while
        another thread runs `embed_pixels`.
        """
        if self._naflex:
            return _NaflexPixels.pack(self._image_processor, images)
        if not images:
            return torch.empty((0, 3, *self._image_size), dtype=torch.float32)
        if self._fast_pixels is not None and all(image.mode == "RGB" for image in images):
            pixels = [self._fast_pixels(image) for image in images]
            if all(p is not None for p in pixels):
                return torch.from_numpy(np.stack(pixels))
        return self._image_processor(images=images, return_tensors="pt")["pixel_values"]

    @property
    def image_side(self) -> int:
        """The shortest image side preprocessing resizes to: a bigger image may be shrunk to it beforehand.

        `images.ImageLimits(shortest_side=encoder.image_side)` decodes and shrinks images to just what the model
        needs, so a big JPEG decodes at a fraction of its size and is resampled once.
        """
        if self._naflex:  # a square image uses the whole patch budget; any other has a shorter short side
            return max(self._image_size)
        shortest, height, width = _processor_size(self._image_processor)
        if shortest:
            return shortest
        if height and width:
            return max(height, width)
        return max(self._image_size)

    def embed_pixels(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Image vectors for `pixel_values` from `preprocess_images`: (n, dimension) float32, unit length."""
        if len(pixel_values) == 0:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        with torch.inference_mode():
            return _unit_rows(self._model.get_image_features(**self.image_inputs(pixel_values)))

    def image_inputs(self, pixel_values: torch.Tensor, device: torch.device | None = None) -> dict:
        """The image tower's inputs for rows of `preprocess_images`, on `device` (default: the encoder's).

        `pixel_values` in the model's precision, plus for a NaFlex model `pixel_attention_mask` (which patches are
        image, not padding) and `spatial_shapes` (each image's grid of patches). Fine-tuning calls
        `model.get_image_features(**encoder.image_inputs(rows))` to see exactly what embedding sees.
        """
        target = self.device if device is None else device
        if self._naflex:
            return _NaflexPixels.unpack(pixel_values, target, self._dtype)
        return {"pixel_values": pixel_values.to(target, dtype=self._dtype)}

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """Image vectors for RGB images: (n, dimension) float32, unit length."""
        return self.embed_pixels(self.preprocess_images(images))

    def embed_texts(self, texts: list[str], *, batch_size: int | None = None) -> np.ndarray:
        """Text vectors: (n, dimension) float32, unit length; texts longer than the model takes are truncated.

        With `batch_size`, the texts go through the tower in calls of at most that many, grouped by token length
        (a call pads its texts to its longest): a text's vector does not depend on the texts it is grouped with.
        """
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        if batch_size is None or len(texts) <= batch_size:
            return self._embed_texts(texts)
        out = np.empty((len(texts), self.info.dimension), dtype=np.float32)
        for rows in self._by_length(texts, batch_size):
            out[rows] = self._embed_texts([texts[i] for i in rows])
        return out

    def tokenize(self, texts: list[str], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """The text tower's inputs for `texts`, on `device` (default: the encoder's), as embedding makes them.

        Padded to the longest text, or for SigLIP and SigLIP 2 lower-cased and padded to the model's fixed length;
        truncated to what the model takes.
        Fine-tuning uses this too, so that it trains on exactly the tokens embedding produces.
        """
        if self._family in _FIXED_LENGTH_FAMILIES:
            # As SigLIP was trained: lower-cased (SigLIP 2's Gemma tokenizer does not do it itself, and its text
            # tower reads cased text worse), padded at the end to the fixed length (Gemma's class pads on the left).
            texts, padding, side = [text.lower() for text in texts], "max_length", "right"
        else:
            texts, padding, side = list(texts), "longest", None
        with self._tokenizer_lock:
            tokens = self._tokenizer(
                texts,
                padding=padding,
                padding_side=side,
                truncation=True,
                max_length=self._max_text_tokens,
                return_tensors="pt",
            )
        target = self.device if device is None else device
        return {name: tokens[name].to(target) for name in self._text_inputs if name in tokens}

    def _by_length(self, texts: list[str], batch_size: int) -> list[np.ndarray]:
        """Row numbers of `texts` in groups of at most `batch_size`, shortest texts first, so each call pads little.

        A fixed-length family pads every text to the same length: its groups keep the texts' order."""
        if self._family in _FIXED_LENGTH_FAMILIES:
            order = np.arange(len(texts))
        else:
            with self._tokenizer_lock:
                ids = self._tokenizer(texts, truncation=True, max_length=self._max_text_tokens)["input_ids"]
            order = np.argsort([len(row) for row in ids], kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        inputs = self.tokenize(texts)
        with torch.inference_mode():
            return _unit_rows(self._model.get_text_features(**inputs))

    def __repr__(self) -> str:
        return f"Encoder({self.info.source!r}, family={self.info.family}, device={self.device}, precision={self.precision})"


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the system (once per process).

    A forward pass allocates and frees the same activation buffers (several MB each) for every batch; by default
    glibc returns them to the kernel and the next batch page-faults them back in, about a tenth of the CPU time of
    the image tower of ViT-B/32 on 2 cores. Keeping up to 1 GiB freed (M_TRIM_THRESHOLD) and serving blocks of up
    to 32 MiB from the heap (M_MMAP_THRESHOLD, glibc's maximum) removes that; the resident size stays at the
    high-water mark of one batch. Returns whether the settings were applied (False off glibc).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        _ALLOCATOR_TUNED = bool(libc.mallopt(m_trim_threshold, 1 << 30)) and bool(
            libc.mallopt(m_mmap_threshold, 32 << 20)
        )
    except (OSError, AttributeError):  # not Linux / not glibc: nothing to tune
        return False
    return _ALLOCATOR_TUNED


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
        return auto_precision(device)
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision fp16 is not supported on the CPU; use bf16 or fp32")
    return precision


def load_processor_and_model(source: str, *, revision: str | None = None, dtype: torch.dtype = torch.float32):
    """The processor (image processor + tokenizer) and model for `source`, as transformers loads them.

    A local directory is read as is (`revision` applies to hub ids only). A hub id is looked up in the local
    Hugging Face cache first and only then on the hub (after a quick check that the hub's host answers at all), so
    a cached model loads without network delays and an offline machine hears so in seconds. Raises
    `ModelLoadError` with a message that says what failed and how to pass a local directory instead.
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
    unreachable = _hub_unreachable()
    if unreachable is not None:  # say so now: the hub client would retry a missing DNS name for ~25 s
        raise _explain(source, revision, unreachable) from unreachable
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


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _hub_unreachable(timeout: float = 5.0) -> ConnectionError | None:
    """Why a TCP connection to the hub's host fails within `timeout` seconds, or None when it opens.

    Behind a proxy the host is not reached directly, so nothing is checked there (None).
    """
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    endpoint = urllib.parse.urlsplit(hub_constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        return ConnectionError(f"cannot connect to {endpoint.hostname}:{port} ({error})")
    return None


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


class _FastPixels:
    """A transformers PIL-backend image processor's resize, centre crop, rescale and normalise, with fewer copies.

    The processor turns each image into an array, back into a PIL image to resize it, crops, then rescales in
    float64 and normalises in float32: about 3 ms for a 400x400 photo on one core, as much as decoding it. Here the
    resize is the same Pillow call (same size rule, same filter), the crop a slice, and rescale + normalise one look-up
    in a table of the 256 values per channel the processor's arithmetic gives, so the pixel values are the
    processor's to the last bit. `for_processor` takes over only plain configurations (resize to a shortest edge or
    to a fixed size, optional centre crop, rescale and/or normalise, no padding) and checks itself against the
    processor on a test image; anything else, or any difference, keeps the processor.
    """

    def __init__(
        self,
        *,
        shortest_edge: int | None,
        fixed_size: tuple[int, int] | None,
        resample: int,
        crop: tuple[int, int] | None,
        table: np.ndarray,
    ) -> None:
        self._shortest_edge = shortest_edge
        self._fixed_size = fixed_size  # (height, width)
        self._resample = resample
        self._crop = crop  # (height, width)
        self._table = table  # (3, 256) float32: pixel value per channel and byte

    @classmethod
    def for_processor(cls, processor) -> _FastPixels | None:
        """A fast equivalent of `processor`, or None where it has none (the processor is then used as is)."""
        try:
            from transformers.image_processing_backends import PilBackend

            fast = cls._from_settings(processor) if _plain_pil_processor(processor, PilBackend) else None
            if fast is None or not fast._agrees_with(processor):
                return None
        except Exception:  # a transformers version that moved things: fall back to the processor
            return None
        return fast

    @classmethod
    def _from_settings(cls, processor) -> _FastPixels | None:
        shortest_edge = fixed_size = crop = None
        if processor.do_resize:
            shortest, height, width = _processor_size(processor)
            if shortest and not (height or width or getattr(processor.size, "longest_edge", None)):
                shortest_edge = shortest
            elif height and width and not shortest:
                fixed_size = (height, width)
            else:
                return None
        if processor.do_center_crop:
            crop_size = processor.crop_size
            if not (getattr(crop_size, "height", None) and getattr(crop_size, "width", None)):
                return None
            crop = (int(crop_size.height), int(crop_size.width))
        if not (processor.do_rescale or processor.do_normalize):
            return None
        # The processor's own arithmetic, on the 256 possible bytes of each channel.
        values = np.arange(256, dtype=np.uint8)[None, :].repeat(3, axis=0)
        if processor.do_rescale:
            values = (values.astype(np.float64) * processor.rescale_factor).astype(np.float32)
        values = values.astype(np.float32)
        if processor.do_normalize:
            mean = np.array(_per_channel(processor.image_mean), dtype=np.float32)[:, None]
            std = np.array(_per_channel(processor.image_std), dtype=np.float32)[:, None]
            values = (values - mean) / std
        resample = int(processor.resample if processor.resample is not None else Image.Resampling.BILINEAR)
        table = np.ascontiguousarray(values, dtype=np.float32)
        return cls(
            shortest_edge=shortest_edge, fixed_size=fixed_size, resample=resample, crop=crop, table=table
        )

    def __call__(self, image: Image.Image) -> np.ndarray | None:
        """(3, height, width) float32 pixel values of an RGB image; None where the processor must do it."""
        size = self._resized_size(image.size)
        if size != image.size:
            image = image.resize(size, resample=self._resample)
        pixels = np.asarray(image)
        if self._crop is not None:
            height, width = pixels.shape[:2]
            top, left = (height - self._crop[0]) // 2, (width - self._crop[1]) // 2
            if top < 0 or left < 0:
                return None  # smaller than the crop: the processor pads, leave that to it
            pixels = pixels[top : top + self._crop[0], left : left + self._crop[1]]
        out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
        for channel in range(3):
            np.take(self._table[channel], pixels[:, :, channel], out=out[channel])
        return out

    def _resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) after the processor's resize (transformers' get_resize_output_image_size)."""
        width, height = size
        if self._fixed_size is not None:
            return self._fixed_size[1], self._fixed_size[0]
        if self._shortest_edge is None:
            return size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self._shortest_edge, int(self._shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def _agrees_with(self, processor) -> bool:
        side = max(self._crop or self._fixed_size or (self._shortest_edge or 32,) * 2)
        noise = np.random.default_rng(0).integers(0, 256, (side + 7, 2 * side + 13, 3), dtype=np.uint8)
        image = Image.fromarray(noise)
        expected = processor(images=[image], return_tensors="np")["pixel_values"][0]
        got = self(image)
        return (
            got is not None and got.shape == expected.shape and np.allclose(got, expected, rtol=0, atol=1e-6)
        )


class _NaflexPixels:
    """A NaFlex image processor's three outputs packed into one float32 tensor per image, and back.

    SigLIP 2 NaFlex resizes each image to its own grid of patches (keeping its aspect ratio) within a budget of
    `max_num_patches`, pads to that budget and says which patches are real (`pixel_attention_mask`) and the grid
    (`spatial_shapes`). The worker's loader threads and `embed.batch` pass one tensor per image and concatenate
    them, so the three travel together: row i is (1, max_num_patches, patch values + 3), whose last three columns
    hold the mask and the grid's height and width (small integers, exact in float32).
    """

    @staticmethod
    def pack(image_processor, images: list[Image.Image]) -> torch.Tensor:
        if not images:
            patches = int(image_processor.max_num_patches)
            values = 3 * int(image_processor.patch_size) ** 2
            return torch.empty((0, 1, patches, values + 3), dtype=torch.float32)
        out = image_processor(images=images, return_tensors="pt")
        pixels, mask, shapes = out["pixel_values"], out["pixel_attention_mask"], out["spatial_shapes"]
        n, patches, _ = pixels.shape
        extra = torch.cat([mask[..., None].float(), shapes[:, None, :].float().expand(n, patches, 2)], dim=-1)
        return torch.cat([pixels.float(), extra], dim=-1)[:, None]

    @staticmethod
    def unpack(packed: torch.Tensor, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        rows = packed.reshape(len(packed), *packed.shape[-2:])
        return {
            "pixel_values": rows[..., :-3].to(device, dtype=dtype),
            "pixel_attention_mask": rows[..., -3].to(device, dtype=torch.long),
            "spatial_shapes": rows[:, 0, -2:].to(device, dtype=torch.long),
        }


def _plain_pil_processor(processor, pil_backend: type) -> bool:
    """True for a PIL-backend processor that runs the backend's own steps, unchanged, with no padding."""
    kind = type(processor)
    return (
        isinstance(processor, pil_backend)
        and kind._preprocess is pil_backend._preprocess
        and kind.process_image is pil_backend.process_image
        and kind.resize is pil_backend.resize
        and kind.center_crop is pil_backend.center_crop
        and kind.rescale is pil_backend.rescale
        and kind.normalize is pil_backend.normalize
        and not getattr(processor, "do_pad", None)
    )


def _processor_size(processor) -> tuple[int | None, int | None, int | None]:
    """(shortest_edge, height, width) of an image processor's `size` setting; None for what it does not set."""
    size = getattr(processor, "size", None)

    def get(name: str) -> int | None:
        value = size.get(name) if isinstance(size, dict) else getattr(size, name, None)
        return int(value) if value else None

    return get("shortest_edge"), get("height"), get("width")


def _per_channel(value) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * 3


def _image_size(config, image_processor) -> tuple[int, int]:
    """(height, width) of the model's input images; for NaFlex, the square that fills its patch budget."""
    size = getattr(config.vision_config, "image_size", None)
    if size is None:  # NaFlex: the image processor picks each image's size within max_num_patches
        side = int(image_processor.patch_size) * math.isqrt(int(image_processor.max_num_patches))
        return side, side
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
