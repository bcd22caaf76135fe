"""Win-rates with bootstrap intervals, the length-controlled win-rate, and rate intervals."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    boots = np.apply_along_axis(stat, 1, values[idx])
    return (float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2)))


def rate(values, seed: int = 0) -> dict:
    """Mean of 0/1 (or [0,1]) values with its bootstrap 95% interval."""
    values = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"value": float(values.mean()) if len(values) else float("nan"), "ci95": [lo, hi], "n": int(len(values))}


def win_rate(outcomes, seed: int = 0) -> dict:
    """outcomes: 1 model wins, 0 baseline wins, 0.5 tie. Win-rate counts a tie as half a win."""
    outcomes = np.asarray(outcomes, dtype=float)
    res = rate(outcomes, seed=seed)
    res.update(wins=int((outcomes == 1).sum()), losses=int((outcomes == 0).sum()), ties=int((outcomes == 0.5).sum()))
    return res


def length_controlled(outcomes, len_model, len_baseline) -> dict:
    """Logistic regression of the outcome on the standardised log-length ratio; the length-controlled win-rate is
    the predicted win probability when both answers have the same length. Ties enter as half a win and half a loss."""
    from sklearn.linear_model import LogisticRegression

    o = np.asarray(outcomes, dtype=float)
    x = np.log1p(np.asarray(len_model, dtype=float)) - np.log1p(np.asarray(len_baseline, dtype=float))
    if len(o) < 4 or len(set(o.tolist())) < 2:
        return {"value": float(o.mean()) if len(o) else float("nan"), "length_coef": 0.0, "note": "too few or one-sided outcomes"}
    scale = x.std() or 1.0
    X = np.concatenate([x, x])[:, None] / scale
    y = np.concatenate([np.ones_like(o), np.zeros_like(o)])
    w = np.concatenate([o, 1 - o])
    keep = w > 0
    clf = LogisticRegression(C=1e4).fit(X[keep], y[keep], sample_weight=w[keep])
    return {"value": float(1 / (1 + np.exp(-clf.intercept_[0]))), "length_coef": float(clf.coef_[0, 0]),
            "raw": float(o.mean()), "note": "win probability at equal length (log-length ratio 0)"}
