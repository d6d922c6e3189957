"""Training a matcher: labelled candidate pairs -> a calibrated, thresholded prodmatch.match.scoring.Matcher.

Cross-validation is grouped by source product, so the pairs of one source never sit on both sides of a fold
(they share the source's rank and margin signals; splitting them would flatter the model). Three model kinds
compete on out-of-fold log-loss: a small, regularised LightGBM with monotone constraints where the direction is
obvious (a higher similarity never lowers the match probability), a logistic regression with median
imputation and missing-value indicators, and their blend (the mean of the two log-odds, whose out-of-fold
scores come from the same folds at no extra cost). The winner's out-of-fold scores fit the calibration (isotonic with
enough positives, Platt otherwise) and then the threshold (best F1, or most recall at a minimum precision);
finally the winner is refitted on all pairs. With few labels the boosted model is skipped and the folds are
fewer; the metrics say so in "notes". The gold reading and candidate gathering belong to the callers.
"""

import math
from collections.abc import Sequence

import numpy as np

from prodmatch.errors import ProdmatchError
from prodmatch.match.scoring import Matcher, calibrate
from prodmatch.match.signals.features import FeatureMatrix

MAX_FOLDS = 5
MIN_POSITIVES_FOR_GBDT = 50
MIN_POSITIVES_FOR_ISOTONIC = 100
GBDT_ROUNDS = 250
GBDT_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "max_bin": 63,
    "verbose": -1,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 1,  # OpenMP threads spin on a busy machine; one thread is faster there
}
# Direction of features whose effect on "same product" is not in doubt; others are left free.
_INCREASING = (
    "sim:",
    "margin:",
    "reverse_margin:",
    "codes_agree",
    "numbers_agree",
    "brand_equal",
    "model_token_",
    "colour_agree",
)
_DECREASING = (
    "rank:",
    "reverse_rank:",
    "codes_conflict",
    "numbers_conflict",
    "colour_conflict",
    "price_log_ratio",
)


def train_matcher(
    features: FeatureMatrix,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    min_precision: float | None = None,
    seed: int = 0,
    name: str = "matcher",
    kinds: Sequence[str] = ("gbdt", "logistic", "blend"),
) -> Matcher:
    """A matcher trained on labelled pairs; `groups` (the source product of each pair) keeps folds apart.

    `kinds` are the model kinds that compete on out-of-fold log-loss ("gbdt", "logistic", "blend").
    """
    labels = np.asarray(labels).astype(np.int64)
    groups = np.asarray(groups)
    _check_inputs(features, labels, groups, min_precision)
    unknown = set(kinds) - {"gbdt", "logistic", "blend"}
    if unknown or not kinds:
        raise ProdmatchError(f"model kinds must be among 'gbdt', 'logistic' and 'blend', got {list(kinds)}")
    x = features.values.astype(np.float64)
    notes: list[str] = []
    folds = _folds(labels, groups, seed, notes)
    n_pos = int(labels.sum())
    if {"gbdt", "blend"} & set(kinds) and n_pos < MIN_POSITIVES_FOR_GBDT:
        notes.append(f"gradient boosting skipped: {n_pos} positives < {MIN_POSITIVES_FOR_GBDT}")
        kinds = [k for k in kinds if k not in ("gbdt", "blend")] or ["logistic"]
    bases = [k for k in ("gbdt", "logistic") if k in kinds or "blend" in kinds]
    out_of_fold = {kind: _out_of_fold(kind, x, labels, folds, features.names, seed) for kind in bases}
    if "blend" in kinds:
        out_of_fold["blend"] = 0.5 * (out_of_fold["gbdt"] + out_of_fold["logistic"])
    out_of_fold = {kind: out_of_fold[kind] for kind in kinds}
    losses = {kind: _log_loss(labels, _sigmoid(raw)) for kind, raw in out_of_fold.items()}
    kind = min(kinds, key=lambda k: (losses[k], k != "gbdt"))
    calibration = _calibration(out_of_fold[kind], labels, notes)
    probabilities = calibrate(calibration, out_of_fold[kind])
    threshold, at_threshold = _threshold(probabilities, labels, min_precision, notes)
    model = _fit(kind, x, labels, features.names, seed)
    metrics = {
        "kind": kind,
        "n_pairs": len(labels),
        "n_positives": n_pos,
        "n_sources": len(np.unique(groups)),
        "folds": len(folds),
        "out_of_fold_log_loss": {k: round(v, 5) for k, v in losses.items()},
        "out_of_fold_auc": round(_auc(labels, out_of_fold[kind]), 5),
        **{f"out_of_fold_{k}": round(v, 5) for k, v in at_threshold.items()},
        "min_precision": min_precision,
        "seed": seed,
        "notes": notes,
    }
    return Matcher(name, features.names, kind, model, calibration, threshold, metrics)


# `train_from_prior`: how many of the prior's pairs one person's label outweighs. 5, 10 and 20 measured on four
# development sets (docs/benchmarks.md, "A few labels"): within 0.01 of each other, none best on every set.
PRIOR_LABEL_WEIGHT = 10.0


def train_from_prior(
    features: FeatureMatrix,
    prior: np.ndarray,
    labels: np.ndarray,
    known: np.ndarray,
    groups: np.ndarray,
    *,
    label_weight: float = PRIOR_LABEL_WEIGHT,
    min_precision: float | None = None,
    seed: int = 0,
    name: str = "matcher",
    prior_name: str = "builtin",
) -> Matcher:
    """A matcher that starts from another matcher's beliefs (`prior`: its probability for every pair) and
    takes a person's labels (`labels` where `known`) as corrections: few labels, and it is no worse than the
    prior; more, and it learns what the prior got wrong on these catalogues.

    `features` are the candidate pairs of the whole run (every source product, not only those labelled):
    a boosted model (cross-entropy, the same monotone constraints and settings as `train_matcher`'s) learns
    the prior's probability on the unlabelled pairs and the label on the labelled ones, each label counting
    `label_weight` times. The threshold is the best expected F1 over all the pairs, a labelled pair counting as
    its label and an unlabelled one as the new matcher's own probability (labels from the review queue are
    chosen near the decision, so they alone would place it badly). Out-of-fold figures on the labelled pairs
    (each fold's labels left out, their pairs back on the prior) are in the metrics, as `train_matcher` gives
    them.
    """
    prior = np.asarray(prior, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if not (len(features) == len(prior) == len(labels) == len(known) == len(groups)):
        raise ProdmatchError(
            f"{len(features)} feature rows, {len(prior)} prior probabilities, {len(labels)} labels, "
            f"{len(known)} known flags and {len(groups)} groups differ"
        )
    if not len(features):
        raise ProdmatchError("training from a prior needs candidate pairs; the catalogues gave none")
    if not np.isfinite(prior).all() or ((prior < 0) | (prior > 1)).any():
        raise ProdmatchError("the prior's probabilities must be numbers between 0 and 1")
    if not np.isin(labels[known], (0, 1)).all():
        raise ProdmatchError("labels must be 0 (different products) or 1 (same product)")
    if label_weight <= 0:
        raise ProdmatchError(f"a label's weight must be positive, not {label_weight}")
    if min_precision is not None and not 0 < min_precision <= 1:
        raise ProdmatchError(f"min_precision must be in (0, 1], got {min_precision}")
    x = features.values.astype(np.float64)
    target = np.where(known, labels, prior).astype(np.float64)
    weight = np.where(known, label_weight, 1.0)
    notes: list[str] = []
    model = _fit_soft(x, target, weight, features.names, seed)
    stand_in = Matcher(name, features.names, "gbdt", model, _IDENTITY, 0.5)
    probabilities = _sigmoid(stand_in.raw_score(features))
    # what each pair is believed to be now: its label, else this matcher's probability (the prior's would undo
    # what the labels taught)
    believed = np.where(known, target, probabilities)
    threshold, expected = _threshold(probabilities, believed, min_precision, notes)
    metrics = {
        "kind": "gbdt",
        "prior": prior_name,
        "label_weight": label_weight,
        "n_pairs": len(target),
        "n_labelled": int(known.sum()),
        "n_positives": int(labels[known].sum()),
        "n_sources": len(np.unique(groups)),
        **{f"expected_{k}": round(v, 5) for k, v in expected.items()},
        **_prior_out_of_fold(x, prior, target, weight, known, groups, features.names, threshold, seed, notes),
        "min_precision": min_precision,
        "seed": seed,
        "notes": notes,
    }
    return Matcher(name, features.names, "gbdt", model, _IDENTITY, threshold, metrics)


_IDENTITY = {"method": "platt", "a": 1.0, "b": 0.0}  # the cross-entropy model's raw score is its log-odds


def _fit_soft(x: np.ndarray, target: np.ndarray, weight: np.ndarray, names: tuple, seed: int) -> dict:
    import lightgbm as lgb

    monotone = [_direction(n) for n in names]
    params = {**GBDT_PARAMS, "objective": "cross_entropy", "seed": seed, "monotone_constraints": monotone}
    data = lgb.Dataset(
        x, label=target, weight=weight, feature_name=[f"f{i}" for i in range(len(names))], free_raw_data=True
    )
    booster = lgb.train(params, data, num_boost_round=GBDT_ROUNDS)
    return {"lightgbm": booster.model_to_string()}


def _prior_out_of_fold(x, prior, target, weight, known, groups, names, threshold, seed, notes) -> dict:
    """Out-of-fold figures on the labelled pairs: each fold's labels replaced by the prior while it is scored."""
    labelled = np.flatnonzero(known)
    y = target[labelled].astype(np.int64)
    if y.sum() < 2 or (1 - y).sum() < 2 or len(np.unique(groups[labelled][y == 1])) < 2:
        notes.append("no out-of-fold figures: the labels hold fewer than 2 matches or non-matches")
        return {}
    folds = _folds(y, groups[labelled], seed, notes)
    raw = np.zeros(len(labelled))
    for _, test in folds:
        held = labelled[test]
        fold_target, fold_weight = target.copy(), weight.copy()
        fold_target[held], fold_weight[held] = prior[held], 1.0
        model = _fit_soft(x, fold_target, fold_weight, names, seed)
        raw[test] = Matcher("fold", names, "gbdt", model, _IDENTITY, 0.5).raw_score(
            FeatureMatrix(names, x[held])
        )
    probabilities = _sigmoid(raw)
    accepted = probabilities >= threshold
    tp = int((accepted & (y == 1)).sum())
    precision = tp / max(int(accepted.sum()), 1)
    recall = tp / int(y.sum())
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "folds": len(folds),
        "out_of_fold_log_loss": {"gbdt": round(_log_loss(y, probabilities), 5)},
        "out_of_fold_auc": round(_auc(y, raw), 5),
        "out_of_fold_precision": round(precision, 5),
        "out_of_fold_recall": round(recall, 5),
        "out_of_fold_f1": round(f1, 5),
    }


def _check_inputs(features: FeatureMatrix, labels: np.ndarray, groups: np.ndarray, min_precision) -> None:
    if not (len(features) == len(labels) == len(groups)):
        raise ProdmatchError(
            f"{len(features)} feature rows, {len(labels)} labels and {len(groups)} groups differ"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ProdmatchError("labels must be 0 (different products) or 1 (same product)")
    n_pos, n_neg = int(labels.sum()), int(len(labels) - labels.sum())
    if n_pos < 2 or n_neg < 2:
        raise ProdmatchError(
            f"training a matcher needs at least 2 matching and 2 non-matching pairs, got {n_pos} and {n_neg}; "
            "label more pairs in the gold file"
        )
    if len(np.unique(groups[labels == 1])) < 2:
        raise ProdmatchError("training a matcher needs true matches for at least 2 different source products")
    if min_precision is not None and not 0 < min_precision <= 1:
        raise ProdmatchError(f"min_precision must be in (0, 1], got {min_precision}")


def _folds(labels: np.ndarray, groups: np.ndarray, seed: int, notes: list[str]) -> list[tuple]:
    from sklearn.model_selection import StratifiedGroupKFold

    positive_groups = len(np.unique(groups[labels == 1]))
    n_folds = min(MAX_FOLDS, positive_groups, len(np.unique(groups)))
    if n_folds < MAX_FOLDS:
        notes.append(
            f"{n_folds} folds instead of {MAX_FOLDS}: only {positive_groups} sources have a true match"
        )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def _out_of_fold(kind: str, x: np.ndarray, y: np.ndarray, folds: list, names: tuple, seed: int) -> np.ndarray:
    raw = np.zeros(len(y))
    for train, test in folds:
        model = _fit(kind, x[train], y[train], names, seed)
        raw[test] = _raw(kind, model, x[test], names)
    return raw


def _fit(kind: str, x: np.ndarray, y: np.ndarray, names: tuple, seed: int) -> dict:
    if kind == "blend":
        return {"gbdt": _fit_gbdt(x, y, names, seed), "logistic": _fit_logistic(x, y, names)}
    return _fit_gbdt(x, y, names, seed) if kind == "gbdt" else _fit_logistic(x, y, names)


def _raw(kind: str, model: dict, x: np.ndarray, names: tuple) -> np.ndarray:
    # a fold's model scored through the serving code, so training measures exactly what links will use
    stand_in = Matcher("fold", names, kind, model, {"method": "platt", "a": 1.0, "b": 0.0}, 0.5)
    return stand_in.raw_score(FeatureMatrix(names, x))


def _fit_gbdt(x: np.ndarray, y: np.ndarray, names: tuple, seed: int) -> dict:
    import lightgbm as lgb

    monotone = [_direction(n) for n in names]
    params = {**GBDT_PARAMS, "seed": seed, "monotone_constraints": monotone}
    # Feature names as LightGBM sees them must be plain identifiers; the matcher keeps the real names.
    data = lgb.Dataset(x, label=y, feature_name=[f"f{i}" for i in range(len(names))], free_raw_data=True)
    booster = lgb.train(params, data, num_boost_round=GBDT_ROUNDS)
    return {"lightgbm": booster.model_to_string()}


def _direction(name: str) -> int:
    if name.startswith(_INCREASING):
        return 1
    if name.startswith(_DECREASING):
        return -1
    return 0


def _fit_logistic(x: np.ndarray, y: np.ndarray, names: tuple) -> dict:
    from sklearn.linear_model import LogisticRegression

    missing = np.isnan(x)
    medians = np.array([np.median(c[~np.isnan(c)]) if (~np.isnan(c)).any() else 0.0 for c in x.T])
    indicators = [j for j in range(x.shape[1]) if 0 < missing[:, j].sum() < len(x)]
    inputs = np.column_stack([np.where(missing, medians, x), *(missing[:, j] for j in indicators)])
    means = inputs.mean(axis=0)
    scales = inputs.std(axis=0)
    scales[scales == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit((inputs - means) / scales, y)
    return {
        "coefficients": model.coef_[0].tolist(),
        "intercept": float(model.intercept_[0]),
        "medians": medians.tolist(),
        "means": means.tolist(),
        "scales": scales.tolist(),
        "missing_indicators": [names[j] for j in indicators],
    }


def _calibration(raw: np.ndarray, y: np.ndarray, notes: list[str]) -> dict:
    if y.sum() >= MIN_POSITIVES_FOR_ISOTONIC:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    from sklearn.linear_model import LogisticRegression

    notes.append(f"Platt calibration: {int(y.sum())} positives < {MIN_POSITIVES_FOR_ISOTONIC} for isotonic")
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return {"method": "platt", "a": float(platt.coef_[0, 0]), "b": float(platt.intercept_[0])}


def _threshold(
    probabilities: np.ndarray, y: np.ndarray, min_precision: float | None, notes: list[str]
) -> tuple[float, dict]:
    """The threshold with the best F1 (or most recall at min_precision), and precision/recall/F1 there."""
    order = np.argsort(-probabilities, kind="stable")
    p, t = probabilities[order], y[order]
    last_of_tie = np.r_[p[1:] != p[:-1], True]  # a threshold accepts every pair with an equal probability
    tp = np.cumsum(t)[last_of_tie]
    accepted = (np.arange(len(t)) + 1)[last_of_tie]
    precision = tp / accepted
    recall = tp / t.sum()
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    if min_precision is None:
        best = int(np.argmax(f1))
    else:
        ok = np.flatnonzero(precision >= min_precision)
        if len(ok):
            best = int(ok[np.argmax(recall[ok])])
        else:
            best = int(np.argmax(precision))
            notes.append(f"no threshold reaches precision {min_precision}; took the most precise one")
    threshold = float(p[last_of_tie][best])
    return threshold, {
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "f1": float(f1[best]),
    }


def _sigmoid(raw: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(raw, -500, 500)))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else math.nan
