"""The Matcher as a stored value: JSON round trip, safe loading, columns by name, contributions; ThresholdScorer."""

import json
from pathlib import Path

import numpy as np
import pytest

import prodmatch.match.scoring as scoring
from prodmatch.errors import ProdmatchError
from prodmatch.match.scoring import Matcher, MatcherError, ThresholdScorer
from prodmatch.match.signals.features import FeatureMatrix
from prodmatch.quality.training import train_matcher

NAMES = ("sim:lexical", "price_log_ratio", "codes_agree")


def generated(n: int, seed: int) -> tuple[FeatureMatrix, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lexical = rng.uniform(0, 1, n)
    ratio = rng.exponential(0.3, n)
    codes = rng.choice([np.nan, 0.0, 1.0], n, p=[0.7, 0.2, 0.1])
    labels = ((lexical > 0.6) & (ratio < 0.2)) | (codes == 1)
    values = np.column_stack([lexical, ratio, codes]).astype(np.float32)
    values[rng.uniform(size=n) < 0.1, 1] = np.nan  # prices missing
    return FeatureMatrix(NAMES, values), labels.astype(np.int64), np.arange(n) // 4


@pytest.fixture(scope="module")
def matchers() -> dict[str, Matcher]:
    features, labels, groups = generated(3000, 0)
    gbdt = train_matcher(features, labels, groups, name="m-gbdt", kinds=("gbdt",))
    blend = train_matcher(features, labels, groups, name="m-blend", kinds=("blend",))
    few = train_matcher(features.rows(np.arange(120)), labels[:120], groups[:120], name="m-logistic")
    assert gbdt.kind == "gbdt" and blend.kind == "blend" and few.kind == "logistic"
    return {"gbdt": gbdt, "logistic": few, "blend": blend}


@pytest.mark.parametrize("kind", ["gbdt", "logistic", "blend"])
def test_json_round_trip_scores_identically(matchers, kind):
    matcher = matchers[kind]
    features, _, _ = generated(500, 1)
    loaded = Matcher.from_json(json.loads(json.dumps(matcher.to_json())))
    assert loaded.kind == kind and loaded.threshold == matcher.threshold
    assert loaded.feature_names == NAMES and loaded.metrics == json.loads(json.dumps(matcher.metrics))
    np.testing.assert_array_equal(loaded.predict_proba(features), matcher.predict_proba(features))
    probabilities = loaded.predict_proba(features)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_array_equal(loaded.accept(features), probabilities >= loaded.threshold)


@pytest.mark.parametrize("kind", ["gbdt", "logistic", "blend"])
def test_columns_are_taken_by_name(matchers, kind):
    matcher = matchers[kind]
    features, _, _ = generated(200, 2)
    order = [2, 0, 1]
    shuffled = FeatureMatrix(tuple(NAMES[i] for i in order), features.values[:, order])
    extra = FeatureMatrix((*NAMES, "sim:image"), np.hstack([features.values, np.ones((200, 1), np.float32)]))
    expected = matcher.predict_proba(features)
    np.testing.assert_array_equal(matcher.predict_proba(shuffled), expected)
    np.testing.assert_array_equal(matcher.predict_proba(extra), expected)
    lacking = FeatureMatrix(NAMES[:2], features.values[:, :2])
    with pytest.raises(MatcherError, match="codes_agree"):
        matcher.predict_proba(lacking)
    assert isinstance(MatcherError("x"), ProdmatchError)
    with_nan = features.values.copy()
    with_nan[:, 2] = np.nan
    np.testing.assert_array_equal(
        matcher.predict_proba(lacking, allow_missing=True),
        matcher.predict_proba(FeatureMatrix(NAMES, with_nan)),
    )


@pytest.mark.parametrize("kind", ["gbdt", "logistic", "blend"])
def test_contributions_add_up_to_the_raw_score(matchers, kind):
    matcher = matchers[kind]
    features, _, _ = generated(100, 3)
    contributions = matcher.contributions(features)
    assert contributions.names == (*NAMES, "bias")
    np.testing.assert_allclose(contributions.values.sum(axis=1), matcher.raw_score(features), atol=1e-6)
    # a shared code pushes towards "same product"
    agreeing = features.column("codes_agree") == 1
    assert (contributions.column("codes_agree")[agreeing] > 0).all()


@pytest.mark.parametrize("kind", ["gbdt", "logistic", "blend"])
def test_no_pairs_score_to_nothing(matchers, kind):
    empty = FeatureMatrix(NAMES, np.zeros((0, 3), np.float32))
    assert matchers[kind].predict_proba(empty).shape == (0,)
    assert matchers[kind].contributions(empty).values.shape == (0, 4)


def test_loading_refuses_anything_but_plain_values(matchers):
    good = matchers["gbdt"].to_json()
    payload = "cos\nsystem\n(S'touch /tmp/prodmatch-pwned'\ntR."  # a pickle that would run a command
    for model in ({"lightgbm": payload}, {"lightgbm": "tree\n" + payload}, {"lightgbm": 42}):
        with pytest.raises(MatcherError):
            Matcher.from_json({**good, "model": model})
    assert not Path("/tmp/prodmatch-pwned").exists()
    with pytest.raises(MatcherError, match="format"):
        Matcher.from_json({**good, "format": "pickle"})
    with pytest.raises(MatcherError, match="kind"):
        Matcher.from_json({**good, "kind": "__import__('os')"})
    logistic = matchers["logistic"].to_json()
    with pytest.raises(MatcherError, match="coefficients"):
        Matcher.from_json(
            {**logistic, "model": {**logistic["model"], "coefficients": ["__import__('os')"] * 6}}
        )
    with pytest.raises(MatcherError, match="calibration"):
        Matcher.from_json({**logistic, "calibration": {"method": "eval", "code": "1+1"}})
    blend = matchers["blend"].to_json()
    for part, bad in (("gbdt", {"lightgbm": payload}), ("logistic", {"coefficients": "os.system"})):
        with pytest.raises(MatcherError):
            Matcher.from_json({**blend, "model": {**blend["model"], part: bad}})
    assert not Path("/tmp/prodmatch-pwned").exists()


def test_a_blend_scores_the_mean_of_its_two_models_log_odds(matchers):
    blend = matchers["blend"]
    features, _, _ = generated(300, 4)
    gbdt, logistic = (
        Matcher("part", NAMES, kind, blend.model[kind], {"method": "platt", "a": 1.0, "b": 0.0}, 0.5)
        for kind in ("gbdt", "logistic")
    )
    np.testing.assert_allclose(
        blend.raw_score(features), (gbdt.raw_score(features) + logistic.raw_score(features)) / 2
    )
    assert set(blend.metrics["out_of_fold_log_loss"]) == {"blend"}


def test_the_scoring_module_cannot_unpickle():
    source = Path(scoring.__file__).read_text()
    for forbidden in ("import pickle", "joblib", "eval(", "exec(", "marshal"):
        assert forbidden not in source


def test_threshold_scorer_is_todays_cosine_link():
    features = FeatureMatrix(
        ("sim:text", "sim:lexical"), np.array([[0.9, 0.1], [0.5, 0.9], [np.nan, 1.0]], np.float32)
    )
    scorer = ThresholdScorer("sim:text", 0.8)
    assert scorer.accept(features).tolist() == [True, False, False]  # a missing cosine is never accepted
    with pytest.raises(MatcherError, match="sim:image"):
        ThresholdScorer("sim:image", 0.5).score(features)
