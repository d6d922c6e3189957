"""Combine a product's image vector and text vector into one fused vector.

`embed.encoders` makes unit-length image and text vectors; `embed.batch` fuses them (`fuse`) into the fused
vector that the worker stores and `match` searches. Two methods, weighted by `image_weight` (w):

- "mean": w * image + (1 - w) * text, scaled back to unit length. Same dimension as the inputs.
- "concat": sqrt(w) * image followed by sqrt(1 - w) * text. Twice the dimension, already unit length, and its
  cosine with another concat vector is exactly w * cos(images) + (1 - w) * cos(texts), so a pgvector cosine
  search over fused vectors ranks products by that weighted score.

A product may lack one modality (no image, or no text). Such rows come as a row of NaN in `image` or `text`, or
the whole array is None when a modality is missing for every row; see `fuse` for what such rows become.
"""

from __future__ import annotations

import math

import numpy as np

from prodmatch.errors import ConfigError

FUSION_METHODS = ("mean", "concat")


def fused_dimension(dimension: int, method: str) -> int:
    """The length of a fused vector made by `method` from image and text vectors of length `dimension`."""
    _check_method(method)
    return dimension * 2 if method == "concat" else dimension


def fuse(
    image: np.ndarray | None, text: np.ndarray | None, *, method: str, image_weight: float
) -> np.ndarray:
    """Fused vectors for rows of image and text vectors: (n, fused_dimension) float32.

    `image` and `text` are (n, d) arrays (or one (d,) vector each, giving one (fused_dimension,) vector).
    Rows are scaled to unit length first. A row that holds a NaN or infinity, or is all zeros, counts as
    missing; None means every row is missing.

    Missing modality — the fused vector is made from the modality that is present, whatever the weight:
    - "mean": the present modality's unit vector, as if its weight were 1.
    - "concat": the present modality's unit vector in its own half and zeros in the other half (the concat of
      that modality alone with weight 1). Its cosine with a complete product's fused vector is therefore
      sqrt(w) * cos(images) (or sqrt(1 - w) * cos(texts)), lower than the weighted score of two complete ones.
    A row missing both modalities becomes a row of NaN, for the caller to record as failed. So does a "mean"
    row whose weighted sum is zero (opposite image and text vectors at w = 0.5), which cannot be normalised.
    """
    _check_method(method)
    weight = _check_weight(image_weight)
    image, text, single = _as_batches(image, text)
    image_unit, image_present = _unit_rows(image)
    text_unit, text_present = _unit_rows(text)
    both = image_present & text_present
    if method == "mean":
        image_scale = np.where(both, weight, image_present)
        text_scale = np.where(both, 1.0 - weight, text_present)
        fused = image_scale[:, None] * image_unit + text_scale[:, None] * text_unit
        fused, _ = _unit_rows(fused)
        degenerate = both & ~np.any(fused, axis=1)
        fused[degenerate] = np.nan
    else:
        image_scale = np.where(both, math.sqrt(weight), image_present)
        text_scale = np.where(both, math.sqrt(1.0 - weight), text_present)
        fused = np.concatenate([image_scale[:, None] * image_unit, text_scale[:, None] * text_unit], axis=1)
    fused[~(image_present | text_present)] = np.nan
    fused = fused.astype(np.float32)
    return fused[0] if single else fused


def _check_method(method: str) -> None:
    if method not in FUSION_METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; choose one of: {', '.join(FUSION_METHODS)}")


def _check_weight(image_weight: float) -> float:
    try:
        weight = float(image_weight)
    except (TypeError, ValueError):
        weight = math.nan
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"image weight must be a number from 0 to 1 (got {image_weight!r})")
    return weight


def _as_batches(image: np.ndarray | None, text: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both modalities as float64 (n, d) arrays, a missing one as NaN rows; and whether the input was one vector."""
    if image is None and text is None:
        raise ValueError("fuse needs an image array, a text array, or both")
    given = [np.asarray(array, dtype=np.float64) for array in (image, text) if array is not None]
    single = given[0].ndim == 1
    given = [np.atleast_2d(array) for array in given]
    if any(array.ndim != 2 for array in given) or len({array.shape for array in given}) > 1:
        raise ValueError(
            f"image and text vectors must be arrays of the same shape (n, d), got {[a.shape for a in given]}"
        )
    shape = given[0].shape
    missing = np.full(shape, np.nan)
    image_rows = given.pop(0) if image is not None else missing
    text_rows = given.pop(0) if text is not None else missing
    return image_rows, text_rows, single


def _unit_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length, with missing rows (non-finite or zero) set to zeros; and which are present."""
    finite = np.all(np.isfinite(rows), axis=1)
    safe = np.where(finite[:, None], rows, 0.0)
    norms = np.linalg.norm(safe, axis=1)
    present = finite & (norms > 0)
    unit = np.zeros_like(safe)
    unit[present] = safe[present] / norms[present, None]
    return unit, present
