"""Scoring: turn a candidate pair's features into a match decision.

Two scorers share one interface (`score(features) -> np.ndarray`, `accept(features) -> bool array`):

* `ThresholdScorer`, today's behaviour: the cosine of one space (or any one feature) against a threshold;
* `Matcher`, a learned scorer trained by prodmatch.quality.training: a small LightGBM model or a logistic
  regression over named pair features, a calibration that turns its raw score into a probability, and the
  threshold picked on held-out folds.

A matcher travels as plain JSON (`to_json`/`from_json`) so it can be stored in the database and loaded back
without any way to run code: no pickle, no eval; a LightGBM model is its own text format, parsed by LightGBM.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from prodmatch.errors import ProdmatchError
from prodmatch.match.signals.features import FeatureMatrix

FORMAT = "prodmatch-matcher"
VERSION = 1
KINDS = ("gbdt", "logistic", "blend")
_IDENTITY = {"method": "platt", "a": 1.0, "b": 0.0}  # a blend's parts give raw scores; the blend calibrates


class MatcherError(ProdmatchError):
    """A matcher cannot be loaded or cannot score the given pairs."""


@dataclass(frozen=True)
class ThresholdScorer:
    """Accepts a pair when one feature (e.g. `sim:text`, a space's cosine) reaches a threshold."""

    feature: str
    threshold: float

    def score(self, features: FeatureMatrix) -> np.ndarray:
        """The feature's values; a missing value scores -inf so it is never accepted."""
        values = _column(features, self.feature, f"threshold scorer on {self.feature!r}")
        return np.where(np.isnan(values), -np.inf, values).astype(np.float64)

    def accept(self, features: FeatureMatrix) -> np.ndarray:
        return self.score(features) >= self.threshold


@dataclass(frozen=True)
class Matcher:
    """A trained match scorer: model, calibration and threshold, with the metrics it was chosen by.

    `model` holds plain values only: for kind "gbdt" {"lightgbm": <Booster.model_to_string()>}; for kind
    "logistic" {"coefficients", "intercept", "medians", "means", "scales", "missing_indicators"}, where the
    inputs are the features (NaN replaced by the training median) followed by a 0/1 "is missing" column for
    each feature named in missing_indicators, standardised by means/scales. `calibration` maps the model's raw
    score (log-odds) to a probability: {"method": "isotonic", "x": [...], "y": [...]} (piecewise linear) or
    {"method": "platt", "a": a, "b": b} (sigmoid(a * raw + b)). Kind "blend" holds both: {"gbdt": <as above>,
    "logistic": <as above>}, and its raw score is the mean of their raw scores (a tree model's and a linear
    model's log-odds averaged: less variance than either on catalogues unlike the training pairs).
    """

    name: str
    feature_names: tuple[str, ...]
    kind: Literal["gbdt", "logistic", "blend"]
    model: Mapping[str, Any]
    calibration: Mapping[str, Any]
    threshold: float
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def predict_proba(self, features: FeatureMatrix, *, allow_missing: bool = False) -> np.ndarray:
        """Calibrated match probability per pair.

        Columns are taken by name, in any order. A feature the matcher needs that `features` lacks entirely is
        an error, unless `allow_missing`, when it counts as missing (NaN) for every pair.
        """
        return self._calibrate(self.raw_score(features, allow_missing=allow_missing))

    score = predict_proba

    def accept(self, features: FeatureMatrix, *, allow_missing: bool = False) -> np.ndarray:
        """Whether each pair's probability reaches the matcher's threshold."""
        return self.predict_proba(features, allow_missing=allow_missing) >= self.threshold

    def raw_score(self, features: FeatureMatrix, *, allow_missing: bool = False) -> np.ndarray:
        """The model's uncalibrated score (log-odds)."""
        if self.kind == "blend":
            gbdt, logistic = self._parts
            return 0.5 * (
                gbdt.raw_score(features, allow_missing=allow_missing)
                + logistic.raw_score(features, allow_missing=allow_missing)
            )
        x = self._aligned(features, allow_missing)
        if self.kind == "gbdt":
            if not len(x):  # LightGBM divides by the row count
                return np.zeros(0)
            return self._booster.predict(x, raw_score=True, num_threads=_threads_for(len(x))).astype(
                np.float64
            )
        return self._logistic_inputs(x) @ self._coefficients + float(self.model["intercept"])

    def contributions(self, features: FeatureMatrix, *, allow_missing: bool = False) -> FeatureMatrix:
        """Each feature's additive share of the raw score (log-odds), plus a final "bias" column.

        LightGBM's SHAP values for "gbdt"; coefficient times standardised input for "logistic" (a feature's
        missing indicator is added to the feature's own share); for "blend" the mean of both. Rows sum to
        `raw_score`.
        """
        names = (*self.feature_names, "bias")
        if self.kind == "blend":
            gbdt, logistic = (
                part.contributions(features, allow_missing=allow_missing).values for part in self._parts
            )
            return FeatureMatrix(names, 0.5 * (gbdt + logistic))
        x = self._aligned(features, allow_missing)
        if self.kind == "gbdt":
            if not len(x):
                return FeatureMatrix(names, np.zeros((0, len(names))))
            return FeatureMatrix(names, self._booster.predict(x, pred_contrib=True, num_threads=1))
        inputs = self._logistic_inputs(x) * self._coefficients
        shares = inputs[:, : len(self.feature_names)].copy()
        for j, name in enumerate(self.model["missing_indicators"]):
            shares[:, self.feature_names.index(name)] += inputs[:, len(self.feature_names) + j]
        bias = np.full((len(x), 1), float(self.model["intercept"]))
        return FeatureMatrix(names, np.hstack([shares, bias]))

    def to_json(self) -> dict:
        """Plain JSON-ready values; `Matcher.from_json(m.to_json())` scores identically."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "kind": self.kind,
            "feature_names": list(self.feature_names),
            "model": dict(self.model),
            "calibration": dict(self.calibration),
            "threshold": float(self.threshold),
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Matcher":
        """A matcher from `to_json()` output; every field is checked, and nothing in it can run code."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise MatcherError(f"not a prodmatch matcher (expected format {FORMAT!r})")
        if data.get("version") != VERSION:
            raise MatcherError(
                f"matcher format version {data.get('version')!r} is not supported (expected 1)"
            )
        name = _string(data.get("name"), "name")
        kind = data.get("kind")
        if kind not in KINDS:
            raise MatcherError(f"matcher {name!r}: kind must be one of {KINDS}, got {kind!r}")
        names = data.get("feature_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise MatcherError(f"matcher {name!r}: feature_names must be a non-empty list of strings")
        model = _checked_model(name, kind, names, data.get("model"))
        calibration = _checked_calibration(name, data.get("calibration"))
        threshold = _number(data.get("threshold"), f"matcher {name!r}: threshold")
        metrics = data.get("metrics", {})
        if not isinstance(metrics, Mapping):
            raise MatcherError(f"matcher {name!r}: metrics must be an object")
        matcher = cls(name, tuple(names), kind, model, calibration, threshold, dict(metrics))
        if kind == "gbdt":
            _ = matcher._booster  # parse now, so a damaged model fails at load time, not at first use
        if kind == "blend":
            _ = matcher._parts[0]._booster
        return matcher

    @cached_property
    def _parts(self) -> tuple["Matcher", "Matcher"]:
        """A blend's gbdt and logistic models, each as an uncalibrated matcher."""
        return tuple(
            Matcher(self.name, self.feature_names, kind, self.model[kind], _IDENTITY, 0.5)
            for kind in ("gbdt", "logistic")
        )

    @cached_property
    def _booster(self):  # noqa: ANN202 - lightgbm is imported lazily: logistic matchers do not need it
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=self.model["lightgbm"])
        except Exception as exc:  # LightGBMError on a malformed model text
            raise MatcherError(f"matcher {self.name!r}: unreadable LightGBM model: {exc}") from None
        if booster.num_feature() != len(self.feature_names):
            raise MatcherError(
                f"matcher {self.name!r}: LightGBM model has {booster.num_feature()} features, "
                f"feature_names lists {len(self.feature_names)}"
            )
        return booster

    @cached_property
    def _coefficients(self) -> np.ndarray:
        return np.asarray(self.model["coefficients"], dtype=np.float64)

    def _logistic_inputs(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        missing = np.isnan(x)
        filled = np.where(missing, np.asarray(self.model["medians"], dtype=np.float64), x)
        flags = [missing[:, self.feature_names.index(n)] for n in self.model["missing_indicators"]]
        inputs = np.column_stack([filled, *flags]) if flags else filled
        return (inputs - np.asarray(self.model["means"])) / np.asarray(self.model["scales"])

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return calibrate(self.calibration, raw)

    def _aligned(self, features: FeatureMatrix, allow_missing: bool) -> np.ndarray:
        index = {n: i for i, n in enumerate(features.names)}
        absent = [n for n in self.feature_names if n not in index]
        if absent and not allow_missing:
            raise MatcherError(
                f"matcher {self.name!r} needs feature(s) {', '.join(absent)} that the candidate pairs lack "
                f"(have: {', '.join(features.names)}); compute them, e.g. with the same spaces and candidate "
                "sources the matcher was trained with"
            )
        out = np.full((len(features), len(self.feature_names)), np.nan, dtype=np.float64)
        for j, name in enumerate(self.feature_names):
            if name in index:
                out[:, j] = features.values[:, index[name]]
        return out


def calibrate(calibration: Mapping[str, Any], raw: np.ndarray) -> np.ndarray:
    """Probabilities from raw scores with a calibration as Matcher.calibration holds it."""
    if calibration["method"] == "platt":
        z = float(calibration["a"]) * raw + float(calibration["b"])
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    return np.interp(raw, calibration["x"], calibration["y"])


def _column(features: FeatureMatrix, name: str, what: str) -> np.ndarray:
    if name not in features.names:
        raise MatcherError(
            f"{what}: the candidate pairs have no feature {name!r} (have: {', '.join(features.names)})"
        )
    return features.column(name).astype(np.float64)


def _checked_model(name: str, kind: str, names: list[str], model: object) -> dict:
    if not isinstance(model, Mapping):
        raise MatcherError(f"matcher {name!r}: model must be an object")
    if kind == "blend":
        return {part: _checked_model(name, part, names, model.get(part)) for part in ("gbdt", "logistic")}
    if kind == "gbdt":
        text = model.get("lightgbm")
        # LightGBM's text format starts with "tree"; anything else (a pickle, code) is refused unread
        if not isinstance(text, str) or not text.startswith("tree\n"):
            raise MatcherError(f"matcher {name!r}: model.lightgbm must be a LightGBM text model")
        return {"lightgbm": text}
    indicators = model.get("missing_indicators")
    if not isinstance(indicators, list) or not all(isinstance(n, str) and n in names for n in indicators):
        raise MatcherError(f"matcher {name!r}: model.missing_indicators must list some of the feature names")
    width = len(names) + len(indicators)
    out = {"missing_indicators": list(indicators), "intercept": _number(model.get("intercept"), "intercept")}
    for key, size in (("coefficients", width), ("medians", len(names)), ("means", width), ("scales", width)):
        values = model.get(key)
        if not isinstance(values, list) or len(values) != size:
            raise MatcherError(f"matcher {name!r}: model.{key} must be a list of {size} numbers")
        out[key] = [_number(v, f"matcher {name!r}: model.{key}") for v in values]
    if any(s == 0 for s in out["scales"]):
        raise MatcherError(f"matcher {name!r}: model.scales must not contain 0")
    return out


def _checked_calibration(name: str, calibration: object) -> dict:
    if not isinstance(calibration, Mapping):
        raise MatcherError(f"matcher {name!r}: calibration must be an object")
    method = calibration.get("method")
    if method == "platt":
        return {
            "method": "platt",
            "a": _number(calibration.get("a"), "a"),
            "b": _number(calibration.get("b"), "b"),
        }
    if method == "isotonic":
        x, y = calibration.get("x"), calibration.get("y")
        if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or not x:
            raise MatcherError(f"matcher {name!r}: isotonic calibration needs lists x and y of one length")
        x = [_number(v, "calibration.x") for v in x]
        y = [_number(v, "calibration.y") for v in y]
        if any(b < a for a, b in zip(x, x[1:], strict=False)):
            raise MatcherError(f"matcher {name!r}: calibration.x must be increasing")
        return {"method": "isotonic", "x": x, "y": y}
    raise MatcherError(f"matcher {name!r}: calibration method must be 'platt' or 'isotonic', got {method!r}")


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MatcherError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MatcherError(f"matcher {what} must be a non-empty string, got {value!r}")
    return value


# Below this many rows, one thread: OpenMP's start-up and spinning cost more than they save.
_PARALLEL_ROWS = 1 << 17


def _threads_for(rows: int) -> int:
    """LightGBM threads for scoring `rows` rows (each row's score is the same whatever the thread count)."""
    if rows < _PARALLEL_ROWS:
        return 1
    from prodmatch.hardware import usable_cores  # imports torch, which scoring alone does not need

    return usable_cores()
