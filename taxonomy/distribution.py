"""Use-case shares corrected for the classifier's errors, and the measurement that decides whether a build shows them.

The correction: with P[k, j] = P(predicted j | true k) from held-out predictions on the labeled set (the calibration
pairs a classifier carries as `cv_true`, `cv_pred`), the predictions of a build follow a multinomial with
probabilities Pᵀπ for the true shares π. `corrected_shares` is the maximum-likelihood π over the simplex, found by
EM (Saerens, Latinne & Decaestecker 2002, in its hard-prediction form), which has a solution on the simplex however
ill-conditioned P is. Its 95% intervals are percentiles of bootstrap draws that resample both uncertainties: the
build's predictions (multinomial) and each row of P (a Dirichlet draw, so a use case with few calibration examples
gets a wide row, not a confident one).

It assumes P(predicted | true) is the same in the calibration set and in the build's prompts. `measure` checks what
the correction does where the truth is known; `SHOWN` records whether the shipped classifier passed that check
(docs/taxonomy.md has the numbers and the command), and the build report shows corrected shares only if it did.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from taxonomy.categories import CATEGORIES

# Measured 2026-12-08 with `python -m taxonomy.distribution` and tests/test_use_case_shares.py (docs/taxonomy.md,
# 2026-12-07 section, updated for the retrained models): the correction fails the known-truth check on the embedded
# sample, so the build shows the classifier's raw shares.
SHOWN = False
NOTE = ("API shares are the classifier's raw counts, not corrected for its errors. The correction (maximum-likelihood "
        "shares by EM over P(predicted | true) from the classifier's held-out predictions on its labeled set, 95% "
        "bootstrap intervals over the prompts and the calibration pairs) assumes P(predicted | true) is the same in "
        "that labeled set and in the build's prompts. Measured for the shipped fast model: where that holds it brings "
        "the shares closer to the truth (mixtures with shifted shares drawn from its calibration pairs: total "
        "variation 0.190 raw, 0.110 corrected, intervals covering 97% of true shares; 1,963 hand-labeled held-out "
        "real prompts: 0.062 raw, 0.024 corrected); but on the embedded sample, whose templated prompts the "
        "classifier labels better than its labeled set, it moves them away from the generator's use cases (0.056 "
        "raw, 0.153 corrected), and a build cannot tell which kind its prompts are. Measurements: instructkit's "
        "docs/taxonomy.md.")
PRIOR = 0.1  # Dirichlet prior of each cell of a row of P(predicted | true) in the bootstrap: one pseudo-count a row


def confusion_counts(true: list[str], pred: list[str], classes: list[str] = CATEGORIES) -> np.ndarray:
    """K x K counts: row = true use case, column = predicted."""
    idx = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)))
    np.add.at(m, ([idx[t] for t in true], [idx[p] for p in pred]), 1)
    return m


def em_shares(q: np.ndarray, p: np.ndarray, tol: float = 1e-9, max_iter: int = 20_000) -> np.ndarray:
    """Maximum-likelihood true shares for observed predicted shares `q` (..., K) and P(pred | true) `p` (..., K, K);
    leading axes are independent problems (bootstrap draws), solved together."""
    pi = np.full(q.shape, 1.0 / q.shape[-1])
    for _ in range(max_iter):
        mix = np.einsum("...k,...kj->...j", pi, p)
        ratio = np.divide(q, mix, out=np.zeros_like(q), where=mix > 0)
        new = pi * np.einsum("...kj,...j->...k", p, ratio)
        new /= new.sum(axis=-1, keepdims=True)
        if np.max(np.abs(new - pi)) < tol:
            return new
        pi = new
    return pi


def corrected_shares(pred: list[str], cv_true: list[str], cv_pred: list[str], *, n_boot: int = 400, seed: int = 0,
                     classes: list[str] = CATEGORIES) -> dict[str, dict]:
    """{use case: {share, ci95, raw_share}} for predictions `pred`, corrected with the calibration pairs."""
    if not pred:
        return {c: {"share": 0.0, "ci95": [0.0, 0.0], "raw_share": 0.0} for c in classes}
    counts = confusion_counts(cv_true, cv_pred, classes)
    seen = Counter(pred)
    n_pred = np.array([seen.get(c, 0) for c in classes], dtype=float)
    point, lo, hi = _estimate(n_pred, counts, n_boot, np.random.default_rng(seed))
    raw = n_pred / n_pred.sum()
    return {c: {"share": round(float(point[i]), 4), "ci95": [round(float(lo[i]), 4), round(float(hi[i]), 4)],
                "raw_share": round(float(raw[i]), 4)} for i, c in enumerate(classes)}


def _estimate(n_pred: np.ndarray, counts: np.ndarray, n_boot: int, rng: np.random.Generator):
    """Point estimate and 95% interval bounds from predicted counts and calibration counts. A use case with no
    calibration pair is one the classifier was not shown: its row is taken as never confused (the shares say
    nothing about it beyond its own predictions)."""
    n, k = int(n_pred.sum()), len(n_pred)
    shown = counts.sum(axis=1) > 0
    counts = np.where(shown[:, None], counts, np.eye(k))
    point = em_shares(n_pred / n, (counts + 1e-9) / (counts + 1e-9).sum(axis=1, keepdims=True))  # rows' ML estimate
    q_boot = rng.multinomial(n, n_pred / n, size=n_boot) / n
    p_boot = np.stack([rng.dirichlet(row + PRIOR, size=n_boot) if seen else np.tile(row, (n_boot, 1))
                       for row, seen in zip(counts, shown)], axis=1)  # (B, K, K)
    boots = em_shares(q_boot, p_boot, tol=1e-7)
    lo, hi = np.quantile(boots, [0.025, 0.975], axis=0)
    return point, np.minimum(lo, point), np.maximum(hi, point)


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum())


def measure(cv_true: list[str], cv_pred: list[str], *, draws: int = 200, n: int = 1000, concentration: float = 1.0,
            n_boot: int = 400, seed: int = 0, classes: list[str] = CATEGORIES) -> dict:
    """The correction where the truth is known and its assumption holds, from the calibration pairs alone: each draw
    splits the pairs in two halves (within each true use case), keeps one half as the calibration set, and takes from
    the other a mixture with shares drawn from a Dirichlet(`concentration`), shifted away from the calibration set's
    (at most `n` prompts, each at most once, so the mixture's errors are its own prompts' errors, as in a build); its
    predicted labels are counted raw and corrected. Returns the mean total-variation distance to the mixture's true
    shares, raw and corrected, the share of draws where the correction was closer, and the 95% intervals' coverage
    per use case and on average."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    t = np.array([classes.index(c) for c in cv_true])
    p = np.array([classes.index(c) for c in cv_pred])
    tv_raw, tv_cor, covered, sizes = [], [], np.zeros(k), []
    for _ in range(draws):
        calib, test = [], []
        for c in range(k):
            members = rng.permutation(np.flatnonzero(t == c))
            calib.extend(members[: len(members) // 2])
            test.append(members[len(members) // 2:])
        counts = np.zeros((k, k))
        np.add.at(counts, (t[calib], p[calib]), 1)
        shares = rng.dirichlet(np.full(k, concentration))
        size = min(n, *(len(test[c]) / shares[c] for c in range(k)))  # the most the half holds without repeats
        n_true = np.minimum(rng.multinomial(int(size), shares), [len(x) for x in test])
        n_pred = sum(np.bincount(p[test[c][:m]], minlength=k) for c, m in enumerate(n_true) if m)
        sizes.append(n_true.sum())
        truth, raw = n_true / n_true.sum(), n_pred / n_true.sum()
        point, lo, hi = _estimate(n_pred.astype(float), counts, n_boot, rng)
        tv_raw.append(total_variation(raw, truth))
        tv_cor.append(total_variation(point, truth))
        covered += (lo <= truth + 1e-12) & (truth <= hi + 1e-12)
    cover = covered / draws
    return {"draws": draws, "mean_n": round(float(np.mean(sizes))), "tv_raw": round(float(np.mean(tv_raw)), 4),
            "tv_corrected": round(float(np.mean(tv_cor)), 4),
            "closer": round(float(np.mean(np.array(tv_cor) < np.array(tv_raw))), 3), "coverage": round(float(cover.mean()), 3),
            "coverage_by_class": {c: round(float(v), 3) for c, v in zip(classes, cover)}}


def against(res: dict[str, dict], true: list[str]) -> dict:
    """`corrected_shares`' result beside the true use cases `true` of the same prompts: total-variation distance of
    the raw and of the corrected shares, and how many use cases' 95% intervals hold their true share."""
    truth = np.array([true.count(c) / len(true) for c in res])
    raw, cor = (np.array([v[key] for v in res.values()]) for key in ("raw_share", "share"))
    held = sum(v["ci95"][0] <= t <= v["ci95"][1] for v, t in zip(res.values(), truth))
    return {"prompts": len(true), "tv_raw": round(total_variation(raw, truth), 4),
            "tv_corrected": round(total_variation(cor, truth), 4), "intervals_holding_the_truth": f"{held}/{len(res)}"}


def main() -> None:
    """Prints the known-truth measurements of the correction for a shipped model (docs/taxonomy.md quotes them)."""
    import argparse
    import json

    from builders.sample.make_sample import build
    from taxonomy.heldout import HELDOUT_SETS, load_heldout
    from taxonomy.model import load_default

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fast", help="fast (default) or embed")
    p.add_argument("--draws", type=int, default=200, help="simulated mixtures")
    p.add_argument("--data-dir", default="../shared/data", help="the public data the held-out references point into")
    a = p.parse_args()
    clf = load_default(a.model)
    truth: dict[str, str] = {}
    api = [r for r in build(truth=truth)["prompts"] if r["source"] == "api"]
    sets = {name: load_heldout(a.data_dir, name) for name in HELDOUT_SETS}
    heldout = {}
    for group, names in (("the four earlier held-out sets", [n for n in sets if n != "large"]), ("large", ["large"]),
                         ("every held-out set", list(sets))):
        texts, labels = sum((sets[n][0] for n in names), []), sum((sets[n][1] for n in names), [])
        heldout[group] = against(clf.shares(clf.predict(texts)[0]), labels)
    mixtures = {f"dirichlet({c})": measure(clf.cv_true, clf.cv_pred, draws=a.draws, concentration=c) for c in (1.0, 5.0)}
    sample = against(clf.shares(clf.predict([r["text"] for r in api])[0]), [truth[r["prompt_id"]] for r in api])
    print(json.dumps({"model": a.model, "mixtures": mixtures, "sample_api_prompts": sample,
                      "heldout_real_prompts": heldout}, indent=2))


if __name__ == "__main__":
    main()
