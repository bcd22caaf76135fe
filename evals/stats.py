"""Win-rates with bootstrap intervals (resampling users when prompts come in users' clusters), intervals for small
slices, the length-controlled win-rate with its own interval, and rate intervals."""

from __future__ import annotations

import math

import numpy as np

SMALL_SAMPLE = 10  # below this many outcomes a bootstrap interval is unreliable (n = 1 gives a zero-width one)


def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05, groups=None) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat`. With `groups` (one label per value, e.g. the user who wrote the
    prompt), whole groups are resampled, so values of one user that move together do not narrow the interval; the
    statistic is then the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    if groups is not None:
        _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        sums, counts = np.bincount(inverse, weights=values), np.bincount(inverse).astype(float)
        idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
        boots = sums[idx].sum(1) / counts[idx].sum(1)
    else:
        idx = rng.integers(0, len(values), size=(n_boot, len(values)))
        boots = np.apply_along_axis(stat, 1, values[idx])
    return (float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2)))


def wilson_ci(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion: sensible for small n, where a bootstrap collapses."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(values, seed: int = 0, groups=None) -> dict:
    """Mean of 0/1 (or [0,1]) values with its 95% interval: a bootstrap (over groups when given), or, below
    SMALL_SAMPLE values, a Wilson interval and `small_sample: true`."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    small = n < SMALL_SAMPLE
    lo, hi = wilson_ci(float(values.sum()), n) if small else bootstrap_ci(values, seed=seed, groups=groups)
    out = {"value": float(values.mean()) if n else float("nan"), "ci95": [lo, hi], "n": int(n)}
    if small:
        out["small_sample"] = True
    if groups is not None and not small:
        out["resampled"] = f"{len(set(map(str, groups)))} users"
    return out


def win_rate(outcomes, seed: int = 0, groups=None) -> dict:
    """outcomes: 1 model wins, 0 baseline wins, 0.5 tie. Win-rate counts a tie as half a win."""
    outcomes = np.asarray(outcomes, dtype=float)
    res = rate(outcomes, seed=seed, groups=groups)
    res.update(wins=int((outcomes == 1).sum()), losses=int((outcomes == 0).sum()), ties=int((outcomes == 0.5).sum()))
    return res


def _lc_value(o: np.ndarray, x: np.ndarray) -> tuple[float, float] | None:
    from sklearn.linear_model import LogisticRegression

    if len(o) < 4 or len(set(o.tolist())) < 2:
        return None
    scale = x.std() or 1.0
    X = np.concatenate([x, x])[:, None] / scale
    y = np.concatenate([np.ones_like(o), np.zeros_like(o)])
    w = np.concatenate([o, 1 - o])
    keep = w > 0
    clf = LogisticRegression(C=1e4).fit(X[keep], y[keep], sample_weight=w[keep])
    return float(1 / (1 + np.exp(-clf.intercept_[0]))), float(clf.coef_[0, 0])


def length_controlled(outcomes, len_model, len_baseline, seed: int = 0, n_boot: int = 300, groups=None) -> dict:
    """Logistic regression of the outcome on the standardised log-length ratio; the length-controlled win-rate is
    the predicted win probability when both answers have the same length. Ties enter as half a win and half a loss.
    Its 95% interval refits the regression on bootstrap resamples (of users, when `groups` is given)."""
    o = np.asarray(outcomes, dtype=float)
    x = np.log1p(np.asarray(len_model, dtype=float)) - np.log1p(np.asarray(len_baseline, dtype=float))
    fit = _lc_value(o, x)
    if fit is None:
        return {"value": float(o.mean()) if len(o) else float("nan"), "length_coef": 0.0, "ci95": [float("nan"), float("nan")],
                "note": "too few or one-sided outcomes"}
    rng = np.random.default_rng(seed)
    if groups is not None:
        labels = np.asarray(groups, dtype=str)
        members = {g: np.flatnonzero(labels == g) for g in np.unique(labels)}
        keys = list(members)
    boots = []
    for _ in range(n_boot):
        if groups is not None:
            idx = np.concatenate([members[keys[k]] for k in rng.integers(0, len(keys), len(keys))])
        else:
            idx = rng.integers(0, len(o), len(o))
        b = _lc_value(o[idx], x[idx])
        if b is not None:
            boots.append(b[0])
    ci = [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))] if boots else [float("nan"), float("nan")]
    return {"value": fit[0], "length_coef": fit[1], "ci95": ci, "raw": float(o.mean()),
            "note": "win probability at equal length (log-length ratio 0)"}
