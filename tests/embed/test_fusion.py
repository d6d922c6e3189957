"""Fusion of image and text vectors: the weighted-cosine identity, unit length, missing modalities, bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prodmatch.embed.fusion import FUSION_METHODS, fuse, fused_dimension
from prodmatch.errors import ConfigError

WEIGHTS = [0.0, 0.3, 0.5, 0.8, 1.0]


def unit_rows(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_fused_dimension():
    assert fused_dimension(512, "mean") == 512
    assert fused_dimension(512, "concat") == 1024


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_output_shape_and_dtype(method):
    fused = fuse(unit_rows(5), unit_rows(5, seed=1), method=method, image_weight=0.5)
    assert fused.shape == (5, fused_dimension(16, method))
    assert fused.dtype == np.float32


@pytest.mark.parametrize("weight", WEIGHTS)
def test_concat_cosine_is_the_weighted_mean_of_modality_cosines(weight):
    images, texts = unit_rows(20, seed=1), unit_rows(20, seed=2)
    fused = fuse(images, texts, method="concat", image_weight=weight)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)
    expected = weight * (images @ images.T) + (1 - weight) * (texts @ texts.T)
    np.testing.assert_allclose(fused @ fused.T, expected, atol=1e-6)


@pytest.mark.parametrize("weight", WEIGHTS)
def test_mean_is_the_normalised_weighted_sum(weight):
    images, texts = unit_rows(20, seed=3), unit_rows(20, seed=4)
    fused = fuse(images, texts, method="mean", image_weight=weight)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)
    expected = weight * images + (1 - weight) * texts
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(fused, expected, atol=1e-6)


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_inputs_are_normalised_first(method):
    images, texts = unit_rows(4, seed=5), unit_rows(4, seed=6)
    scaled = fuse(images * 3.0, texts * 0.5, method=method, image_weight=0.4)
    np.testing.assert_allclose(scaled, fuse(images, texts, method=method, image_weight=0.4), atol=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_mean_with_one_modality_missing_is_that_modality(weight):
    images, texts = unit_rows(3, seed=7), unit_rows(3, seed=8)
    images[1] = np.nan
    texts[2] = np.nan
    fused = fuse(images, texts, method="mean", image_weight=weight)
    np.testing.assert_allclose(fused[1], texts[1], atol=1e-6)
    np.testing.assert_allclose(fused[2], images[2], atol=1e-6)
    np.testing.assert_allclose(
        fuse(None, texts[:2], method="mean", image_weight=weight), texts[:2], atol=1e-6
    )
    np.testing.assert_allclose(
        fuse(images[[0, 2]], None, method="mean", image_weight=weight), images[[0, 2]], atol=1e-6
    )


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_concat_with_one_modality_missing_fills_its_half_with_zeros(weight):
    images, texts = unit_rows(3, seed=9), unit_rows(3, seed=10)
    images[1] = np.nan
    texts[2] = np.nan
    fused = fuse(images, texts, method="concat", image_weight=weight)
    np.testing.assert_allclose(fused[1], np.concatenate([np.zeros(16), texts[1]]), atol=1e-6)
    np.testing.assert_allclose(fused[2], np.concatenate([images[2], np.zeros(16)]), atol=1e-6)
    text_only = fuse(None, texts[:2], method="concat", image_weight=weight)
    np.testing.assert_allclose(text_only[:, 16:], texts[:2], atol=1e-6)
    assert not text_only[:, :16].any()


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_a_row_missing_both_modalities_is_nan(method):
    images, texts = unit_rows(3, seed=11), unit_rows(3, seed=12)
    images[0] = np.nan
    texts[0] = np.nan
    texts[1] = 0.0  # an all-zero row counts as missing, too
    fused = fuse(images, texts, method=method, image_weight=0.5)
    assert np.isnan(fused[0]).all()
    assert np.isfinite(fused[1:]).all()
    assert np.isnan(fuse(None, texts[:1], method=method, image_weight=0.5)).all()


def test_mean_of_opposite_vectors_is_nan():
    images = unit_rows(1)
    assert np.isnan(fuse(images, -images, method="mean", image_weight=0.5)).all()


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_one_vector_gives_one_vector(method):
    image, text = unit_rows(1, seed=13)[0], unit_rows(1, seed=14)[0]
    fused = fuse(image, text, method=method, image_weight=0.6)
    assert fused.shape == (fused_dimension(16, method),)
    np.testing.assert_allclose(fused, fuse(image[None], text[None], method=method, image_weight=0.6)[0])


@pytest.mark.parametrize("method", ["sum", "", "MEAN", None])
def test_unknown_method_is_a_config_error(method):
    with pytest.raises(ConfigError, match="fusion method"):
        fuse(unit_rows(2), unit_rows(2), method=method, image_weight=0.5)
    with pytest.raises(ConfigError, match="fusion method"):
        fused_dimension(16, method)


@pytest.mark.parametrize("weight", [-0.1, 1.5, math.nan, math.inf, "half", None])
def test_weight_outside_0_to_1_is_a_config_error(weight):
    with pytest.raises(ConfigError, match="image weight"):
        fuse(unit_rows(2), unit_rows(2), method="mean", image_weight=weight)


def test_mismatched_or_absent_arrays_are_a_bug():
    with pytest.raises(ValueError, match="same shape"):
        fuse(unit_rows(2), unit_rows(3), method="mean", image_weight=0.5)
    with pytest.raises(ValueError, match="same shape"):
        fuse(unit_rows(2, d=8), unit_rows(2, d=16), method="concat", image_weight=0.5)
    with pytest.raises(ValueError, match="image array, a text array"):
        fuse(None, None, method="mean", image_weight=0.5)
