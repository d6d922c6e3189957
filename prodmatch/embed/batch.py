"""One batch of products into image, text and fused vectors: the single place products become vectors.

The worker (`embed.worker`) calls `embed_products` for each claimed batch and stores the result; fine-tuning
(`quality.finetune`) calls it to measure its hold-out before and after training, so both see exactly the
vectors the database would hold. Pixels come from `embed.images` through the encoder's preprocessing, texts from
`embed.text.render_text`; `embed.fusion.fuse` makes the fused vector. No database here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prodmatch.embed.encoders import Encoder
from prodmatch.embed.fusion import fuse


@dataclass(frozen=True)
class ProductVectors:
    """(n, d) float32 image and text vectors and (n, fused d) fused vectors; a row of NaN where one is missing."""

    image: np.ndarray
    text: np.ndarray
    fused: np.ndarray

    def has_image(self, i: int) -> bool:
        return not np.isnan(self.image[i]).any()

    def has_text(self, i: int) -> bool:
        return not np.isnan(self.text[i]).any()

    def has_fused(self, i: int) -> bool:
        return not np.isnan(self.fused[i]).any()


def embed_products(
    encoder: Encoder,
    pixels: list[torch.Tensor | None],
    texts: list[str],
    *,
    fusion: str,
    image_weight: float,
) -> ProductVectors:
    """Vectors for products given their preprocessed pixels (None: no usable image) and rendered texts ("": none).

    Each pixel tensor is one image as `encoder.preprocess_images` makes it, (channels, height, width) or with a
    leading batch dimension of 1. Images and texts each go through the model in one call.
    """
    if len(pixels) != len(texts):
        raise ValueError(f"{len(pixels)} pixel tensors for {len(texts)} texts")
    width = encoder.info.dimension
    image = np.full((len(texts), width), np.nan, dtype=np.float32)
    text = np.full((len(texts), width), np.nan, dtype=np.float32)
    with_image = [i for i, p in enumerate(pixels) if p is not None]
    with_text = [i for i, t in enumerate(texts) if t]
    if with_image:
        batch = torch.cat([pixels[i].reshape(1, *pixels[i].shape[-3:]) for i in with_image])
        image[with_image] = encoder.embed_pixels(batch)
    if with_text:
        text[with_text] = encoder.embed_texts([texts[i] for i in with_text])
    fused = fuse(image, text, method=fusion, image_weight=image_weight)
    return ProductVectors(image=image, text=text, fused=fused)
