"""Training from a prior (the built-in matcher's view of every pair) with a few labels as corrections."""

import numpy as np
import pytest

from prodmatch.errors import ProdmatchError
from prodmatch.match.signals.features import FeatureMatrix
from prodmatch.quality.training import train_from_prior

NAMES = ("sim:lexical", "attribute_agreement")


def catalogue(n: int, seed: int) -> tuple[FeatureMatrix, np.ndarray, np.ndarray, np.ndarray]:
    """Same product iff the lexical similarity is high AND the attributes agree. The prior knows the first
    half of that rule (it believes every high-similarity pair); the labels must teach it the second."""
    rng = np.random.default_rng(seed)
    lexical = rng.uniform(0, 1, n)
    attributes = rng.uniform(0, 1, n)
    truth = ((lexical > 0.6) & (attributes > 0.5)).astype(np.int64)
    prior = 1 / (1 + np.exp(-12 * (lexical - 0.6)))
    features = FeatureMatrix(NAMES, np.column_stack([lexical, attributes]).astype(np.float32))
    return features, truth, prior, np.arange(n) // 10


def f1(truth: np.ndarray, accepted: np.ndarray) -> float:
    tp = int((accepted & (truth == 1)).sum())
    return 2 * tp / (accepted.sum() + truth.sum()) if tp else 0.0


def test_no_label_keeps_the_prior_and_labels_correct_it():
    features, truth, prior, groups = catalogue(3000, 0)
    test, test_truth, test_prior, _ = catalogue(3000, 1)
    prior_f1 = f1(test_truth, test_prior >= 0.5)
    nothing = np.zeros(len(truth), dtype=bool)
    alone = train_from_prior(features, prior, truth, nothing, groups)
    # with no label it decides as the prior does
    agreement = np.mean(alone.accept(test) == (test_prior >= 0.5))
    assert agreement > 0.95, agreement
    assert alone.metrics["n_labelled"] == 0 and alone.metrics["prior"] == "builtin"
    assert "out_of_fold_f1" not in alone.metrics and alone.metrics["notes"]
    # labels outweigh the prior where there are enough of them: 400 (40 sources' candidates) teach it that the
    # attributes must agree too
    known = groups < 40
    taught = train_from_prior(features, prior, truth, known, groups, seed=3)
    taught_f1 = f1(test_truth, taught.accept(test))
    assert taught_f1 > prior_f1 + 0.1, (taught_f1, prior_f1)
    assert taught.metrics["n_labelled"] == 400 and taught.metrics["n_positives"] == int(truth[known].sum())
    assert 0 <= taught.metrics["out_of_fold_f1"] <= 1 and taught.metrics["folds"] >= 2
    # with 30 labels it does not fall below the prior (whether labels alone would do better depends on how
    # many features and matches there are: measured on real catalogues by benchmarks/few_labels.py)
    few = groups < 3
    started = train_from_prior(features, prior, truth, few, groups, seed=3)
    assert f1(test_truth, started.accept(test)) >= prior_f1 - 0.02
    # it is a stored matcher like any other: its JSON scores the same
    again = type(taught).from_json(taught.to_json())
    assert np.allclose(again.predict_proba(test), taught.predict_proba(test))


def test_training_from_a_prior_is_deterministic():
    features, truth, prior, groups = catalogue(1000, 4)
    known = groups < 10
    a = train_from_prior(features, prior, truth, known, groups, seed=7)
    b = train_from_prior(features, prior, truth, known, groups, seed=7)
    assert a.to_json() == b.to_json()
    # `explain` reads each feature's share of the log-odds: they add up to the score
    shares = a.contributions(features.rows(np.arange(20)))
    assert shares.names == (*NAMES, "bias")
    assert np.allclose(shares.values.sum(axis=1), a.raw_score(features.rows(np.arange(20))))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prior": np.full(100, 1.5)}, "between 0 and 1"),
        ({"prior": np.full(99, 0.5)}, "differ"),
        ({"labels": np.full(100, 2)}, "labels must be 0"),
        ({"label_weight": 0.0}, "weight must be positive"),
        ({"min_precision": 1.5}, "min_precision"),
    ],
)
def test_bad_inputs_are_clear_errors(change, message):
    features, truth, prior, groups = catalogue(100, 5)
    arguments = {"prior": prior, "labels": truth, "label_weight": 10.0, "min_precision": None, **change}
    known = np.ones(100, dtype=bool)
    with pytest.raises(ProdmatchError, match=message):
        train_from_prior(
            features,
            arguments["prior"],
            arguments["labels"],
            known,
            groups,
            label_weight=arguments["label_weight"],
            min_precision=arguments["min_precision"],
        )
