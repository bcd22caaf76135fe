"""Win-rates with bootstrap intervals (resampling users when prompts come in users' clusters), Wilson intervals
where a bootstrap cannot be trusted (few prompts, few users, every outcome equal), the length-controlled win-rate
with its own interval and its overlap diagnostics, paired differences, and seeded subsets."""

from __future__ import annotations

import math

import numpy as np

MIN_PROMPTS = 30  # below this many outcomes a percentile bootstrap undercovers (n=12, p=0.9 covers 0.70)
MIN_USERS = 10  # below this many users a user-cluster bootstrap undercovers (one user: zero width, coverage 0)
NEAR_EQUAL_LENGTH = 0.1  # |log length ratio| below this counts as a pair of about equal length
MIN_OVERLAP = 0.10  # under this share of near-equal pairs the LC win-rate is an extrapolation
_BOOT_CELLS = 1 << 22  # resampled values held at once by the iid bootstrap (32 MiB of float64)


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices of a seeded random subset of `limit` of `n` items, in their original order (all of them when there is
    no limit or it is at least n): `--limit` draws a subset instead of taking the head of a file."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())


def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05, groups=None) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat`. With `groups` (one label per value, e.g. the user who wrote the
    prompt), whole groups are resampled, so values of one user that move together do not narrow the interval; the
    statistic is then the mean. Without groups the resamples are drawn in chunks, so memory stays bounded for any n."""
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
        rows = max(1, _BOOT_CELLS // len(values))
        boots = np.concatenate([np.apply_along_axis(stat, 1, values[rng.integers(0, len(values), size=(min(rows, n_boot - b), len(values)))])
                                for b in range(0, n_boot, rows)])
    return (float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2)))


def wilson_ci(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion: sensible for small n, where a bootstrap collapses."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(values, seed: int = 0, groups=None) -> dict:
    """Mean of 0/1 (or [0,1]) values with its 95% interval, and how many prompts and users it rests on.

    A bootstrap (over users when `groups` is given) when it can be trusted; else a Wilson interval and
    `small_sample: true` with the reason: fewer than MIN_PROMPTS values, fewer than MIN_USERS users (then Wilson's
    n is the number of users, as if each user's prompts were one observation: a user's prompts move together), or
    every value equal (a bootstrap would give a zero-width interval)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    users = len(set(map(str, groups))) if groups is not None else None
    reasons = [why for why, hit in (
        (f"fewer than {MIN_PROMPTS} prompts", n < MIN_PROMPTS),
        (f"fewer than {MIN_USERS} users", users is not None and users < MIN_USERS),
        ("every outcome equal", n > 0 and bool(np.all(values == values[0]))),
    ) if hit]
    value = float(values.mean()) if n else float("nan")
    out: dict = {"value": value, "n": int(n), "prompts": int(n), "users": users}
    if reasons:
        n_eff = users if users is not None and users < MIN_USERS else n
        out["ci95"] = list(wilson_ci(value * n_eff, n_eff)) if n else [float("nan"), float("nan")]
        out["interval"] = "wilson over users" if n_eff != n else "wilson"
        out["small_sample"] = True
        out["small_reason"] = "; ".join(reasons)
    else:
        out["ci95"] = list(bootstrap_ci(values, seed=seed, groups=groups))
        out["interval"] = "bootstrap over users" if groups is not None else "bootstrap"
        if groups is not None:
            out["resampled"] = f"{users} users"
    return out


def win_rate(outcomes, seed: int = 0, groups=None) -> dict:
    """outcomes: 1 model wins, 0 baseline wins, 0.5 tie. Win-rate counts a tie as half a win."""
    outcomes = np.asarray(outcomes, dtype=float)
    res = rate(outcomes, seed=seed, groups=groups)
    res.update(wins=int((outcomes == 1).sum()), losses=int((outcomes == 0).sum()), ties=int((outcomes == 0.5).sum()))
    return res


def paired_difference(a, b, seed: int = 0, groups=None, n_boot: int = 2000) -> dict:
    """Mean of a - b over paired units (the same prompts under two conditions or two models) with a paired
    bootstrap interval (over users when given): each resample moves both sides of a pair together, so what the
    two share (the prompt's difficulty) cancels instead of widening the interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    out = {"value": float(d.mean()) if len(d) else float("nan"), "ci95": list(bootstrap_ci(d, n_boot=n_boot, seed=seed, groups=groups)),
           "n": int(len(d)), "interval": "paired bootstrap" + (" over users" if groups is not None else "")}
    if len(d) < MIN_PROMPTS:
        out["small_sample"] = True
        out["small_reason"] = f"fewer than {MIN_PROMPTS} pairs"
    return out


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
    Its 95% interval refits the regression on bootstrap resamples (of users, when `groups` is given); a resample
    whose fit fails (one-sided outcomes) counts as its raw win-rate, and how many did is reported.

    How far the answers' lengths overlap is reported beside it: the share of pairs of about equal length
    (|log ratio| < 0.1) and the 5-95% range of the log ratio. Under 10% overlap the value is `extrapolated`: it is
    the fitted curve far from any pair. When no fit is possible at all, `value` is None ("not fitted")."""
    o = np.asarray(outcomes, dtype=float)
    x = np.log1p(np.asarray(len_model, dtype=float)) - np.log1p(np.asarray(len_baseline, dtype=float))
    raw = float(o.mean()) if len(o) else float("nan")
    overlap = {"near_equal_length_share": float(np.mean(np.abs(x) < NEAR_EQUAL_LENGTH)) if len(x) else float("nan"),
               "log_length_ratio_5_95": [float(np.quantile(x, 0.05)), float(np.quantile(x, 0.95))] if len(x) else [float("nan")] * 2}
    extrapolated = bool(len(x)) and overlap["near_equal_length_share"] < MIN_OVERLAP
    fit = _lc_value(o, x)
    if fit is None:
        return {"value": None, "fitted": False, "ci95": None, "raw": raw, **overlap, "extrapolated": extrapolated,
                "note": "not fitted: too few or one-sided outcomes"}
    rng = np.random.default_rng(seed)
    if groups is not None:
        labels = np.asarray(groups, dtype=str)
        members = {g: np.flatnonzero(labels == g) for g in np.unique(labels)}
        keys = list(members)
    boots, failed = [], 0
    for _ in range(n_boot):
        if groups is not None:
            idx = np.concatenate([members[keys[k]] for k in rng.integers(0, len(keys), len(keys))])
        else:
            idx = rng.integers(0, len(o), len(o))
        b = _lc_value(o[idx], x[idx])
        failed += b is None
        boots.append(b[0] if b is not None else float(o[idx].mean()))
    note = "win probability at equal length (log-length ratio 0)"
    if extrapolated:
        note += f"; extrapolated: only {overlap['near_equal_length_share']:.0%} of pairs are of about equal length"
    return {"value": fit[0], "fitted": True, "length_coef": fit[1],
            "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))], "raw": raw,
            "resamples": n_boot, "failed_resamples": failed, **overlap, "extrapolated": extrapolated, "note": note}
