"""Use-case shares corrected for the classifier's errors: adjusted classify-and-count.

With C[i, j] = P(predicted j | true i) from cross-validated predictions on the labeled set, the observed share of
predictions q satisfies q = Cᵀ p for the true shares p. We solve for p ≥ 0 with Σp = 1 (non-negative least
squares with a heavily weighted sum-to-one row), and bootstrap both the prompts and the cross-validated pairs for
95% intervals.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from taxonomy.categories import CATEGORIES


def _confusion(true: list[str], pred: list[str], classes: list[str]) -> np.ndarray:
    idx = {c: i for i, c in enumerate(classes)}
    m = np.full((len(classes), len(classes)), 1e-3)  # a small prior keeps rows of unseen classes defined
    np.fill_diagonal(m, 1.0)
    for t, p in zip(true, pred):
        m[idx[t], idx[p]] += 1
    return m / m.sum(axis=1, keepdims=True)


def _solve(q: np.ndarray, c: np.ndarray, weight: float = 100.0) -> np.ndarray:
    a = np.vstack([c.T, weight * np.ones((1, len(q)))])
    b = np.concatenate([q, [weight]])
    p, _ = nnls(a, b)
    return p / p.sum() if p.sum() > 0 else q


def adjusted_shares(pred: list[str], cv_true: list[str], cv_pred: list[str], *, n_boot: int = 300, seed: int = 0,
                    classes: list[str] = CATEGORIES) -> dict[str, dict]:
    """{use case: {share, ci95, raw_share}} for predictions `pred`, corrected with the cross-validated errors."""
    if not pred:
        return {c: {"share": 0.0, "ci95": [0.0, 0.0], "raw_share": 0.0} for c in classes}
    idx = {c: i for i, c in enumerate(classes)}
    pred_i = np.array([idx[p] for p in pred])
    cv_t, cv_p = np.array(cv_true), np.array(cv_pred)

    def q_of(ix: np.ndarray) -> np.ndarray:
        return np.bincount(ix, minlength=len(classes)) / len(ix)

    point = _solve(q_of(pred_i), _confusion(list(cv_t), list(cv_p), classes))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pi = pred_i[rng.integers(0, len(pred_i), len(pred_i))]
        ci = rng.integers(0, len(cv_t), len(cv_t))
        boots.append(_solve(q_of(pi), _confusion(list(cv_t[ci]), list(cv_p[ci]), classes)))
    boots = np.array(boots)
    raw = q_of(pred_i)
    return {c: {"share": round(float(point[i]), 4),
                "ci95": [round(float(np.quantile(boots[:, i], 0.025)), 4), round(float(np.quantile(boots[:, i], 0.975)), 4)],
                "raw_share": round(float(raw[i]), 4)} for c, i in idx.items()}
