"""Training a matcher: beats single signals where no one signal suffices, works with few labels, calibrated."""

import json

import numpy as np
import pytest

from prodmatch.errors import ProdmatchError
from prodmatch.match.signals.features import FeatureMatrix
from prodmatch.quality.training import train_matcher

NAMES = ("sim:lexical", "price_log_ratio", "codes_agree", "sim:text")


def no_single_signal_suffices(n: int, seed: int) -> tuple[FeatureMatrix, np.ndarray, np.ndarray]:
    """Same product iff (lexical similarity high AND prices close) OR a code agrees; sim:text is noise."""
    rng = np.random.default_rng(seed)
    lexical = np.clip(rng.normal(0.5, 0.2, n), 0, 1)
    ratio = rng.exponential(0.3, n)
    codes = rng.choice([np.nan, 0.0, 1.0], n, p=[0.75, 0.15, 0.10])
    labels = ((lexical > 0.6) & (ratio < 0.15)) | (codes == 1)
    noise = rng.uniform(0, 1, n)
    values = np.column_stack([lexical, ratio, codes, noise]).astype(np.float32)
    return FeatureMatrix(NAMES, values), labels.astype(np.int64), np.arange(n) // 5


def best_f1(y: np.ndarray, decisions: np.ndarray) -> float:
    tp = int((decisions & (y == 1)).sum())
    return 2 * tp / (decisions.sum() + y.sum()) if tp else 0.0


def single_signal_f1(
    train: FeatureMatrix, y_train, test: FeatureMatrix, y_test, name: str, sign: float
) -> float:
    """F1 on test of one signal with its best threshold on train."""
    column, test_column = (
        sign * np.nan_to_num(train.column(name), nan=-9),
        sign * np.nan_to_num(test.column(name), nan=-9),
    )
    thresholds = np.unique(column)
    best = max(thresholds, key=lambda t: best_f1(y_train, column >= t))
    return best_f1(y_test, test_column >= best)


def test_matcher_beats_the_best_single_signal():
    train, y_train, groups = no_single_signal_suffices(4000, 0)
    test, y_test, _ = no_single_signal_suffices(4000, 1)
    matcher = train_matcher(train, y_train, groups)
    matcher_f1 = best_f1(y_test, matcher.accept(test))
    singles = {
        name: single_signal_f1(train, y_train, test, y_test, name, sign)
        for name, sign in (("sim:lexical", 1), ("price_log_ratio", -1), ("codes_agree", 1), ("sim:text", 1))
    }
    assert matcher_f1 >= max(singles.values()) + 0.05, (matcher_f1, singles)
    assert matcher.metrics["out_of_fold_f1"] > 0.8
    assert matcher.metrics["n_pairs"] == 4000 and matcher.metrics["n_positives"] == int(y_train.sum())


def test_few_labels_fall_back_to_logistic_and_fewer_folds():
    features, labels, groups = no_single_signal_suffices(4000, 2)
    positives = np.flatnonzero(labels == 1)[:20]
    negatives = np.flatnonzero(labels == 0)[:200]
    keep = np.r_[positives, negatives]
    groups = np.r_[np.arange(20) % 3, np.arange(200) % 3]  # only 3 sources
    matcher = train_matcher(features.rows(keep), labels[keep], groups)
    assert matcher.kind == "logistic" and matcher.metrics["folds"] == 3
    notes = " ".join(matcher.metrics["notes"])
    assert "gradient boosting skipped" in notes and "3 folds" in notes and "Platt" in notes
    assert 0 < matcher.threshold < 1


def test_training_is_deterministic_and_honours_min_precision():
    features, labels, groups = no_single_signal_suffices(2000, 3)
    first = train_matcher(features, labels, groups, seed=7, min_precision=0.97)
    second = train_matcher(features, labels, groups, seed=7, min_precision=0.97)
    assert json.dumps(first.to_json(), sort_keys=True) == json.dumps(second.to_json(), sort_keys=True)
    assert first.metrics["out_of_fold_precision"] >= 0.97
    assert first.metrics["out_of_fold_recall"] > 0.5
    other_seed = train_matcher(features, labels, groups, seed=8, min_precision=0.97)
    assert other_seed.to_json()["model"] != first.to_json()["model"]


def test_probabilities_are_calibrated():
    rng = np.random.default_rng(4)
    n = 20000
    x = rng.normal(0, 1, (n, 2))
    truth = 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1] - 1.0)))
    labels = (rng.uniform(size=n) < truth).astype(np.int64)
    features = FeatureMatrix(("sim:a", "sim:b"), x.astype(np.float32))
    matcher = train_matcher(features.rows(np.arange(10000)), labels[:10000], np.arange(10000))
    held_out = features.rows(np.arange(10000, n))
    probabilities = matcher.predict_proba(held_out)
    observed = labels[10000:]
    for low in np.arange(0, 1, 0.2):
        in_bin = (probabilities >= low) & (probabilities < low + 0.2)
        if in_bin.sum() >= 200:
            assert abs(probabilities[in_bin].mean() - observed[in_bin].mean()) < 0.05, low


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.r_[1, np.zeros(99)], "at least 2 matching"),
        (np.r_[1, 1, np.zeros(98)], "2 different source products"),
    ],
)
def test_too_few_labels_is_a_clear_error(labels, message):
    features, _, _ = no_single_signal_suffices(100, 5)
    groups = np.r_[0, 0, np.arange(98) + 1]
    with pytest.raises(ProdmatchError, match=message):
        train_matcher(features, labels.astype(np.int64), groups)


@pytest.mark.parametrize("kind", ["gbdt", "logistic", "blend"])
def test_a_feature_no_pair_has_does_not_break_training(kind):
    features, labels, groups = no_single_signal_suffices(1500, 6)
    values = features.values.copy()
    values[:, NAMES.index("price_log_ratio")] = np.nan  # a catalogue without prices
    matcher = train_matcher(FeatureMatrix(NAMES, values), labels, groups, kinds=(kind,))
    assert matcher.kind == kind
    assert np.isfinite(matcher.predict_proba(FeatureMatrix(NAMES, values))).all()
    assert matcher.metrics["out_of_fold_auc"] > 0.8  # codes and lexical similarity still carry it
