"""build_report.json: what the build read, kept, dropped (every record, with its reason) and made, and the check
that accounts for every validated record."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import polars as pl

from builders.stages.split import SPLITS
from taxonomy import distribution as correction
from taxonomy.categories import CATEGORIES, PAPER_SHARES


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _table6(counts: pl.DataFrame) -> list[dict]:
    """The paper's Table 6 (rows per dataset, split and source) from `counts` (dataset, split, source, len)."""
    n = {(d, sp, so): k for d, sp, so, k in counts.group_by("dataset", "split", "source").agg(pl.col("len").sum()).iter_rows()}
    return [{"dataset": name, "split": split, "labeler": n.get((name, split, "labeler"), 0), "api": n.get((name, split, "api"), 0)}
            for name in ("SFT", "RM", "PPO") for split in SPLITS]


def _use_cases(api_categories: list[str], all_counts: Counter, all_total: int, classifier=None) -> dict:
    def shares(counts: Counter, n: int) -> dict[str, dict]:
        total = max(1, n)
        return {c: {"count": counts.get(c, 0), "share": round(counts.get(c, 0) / total, 4)} for c in CATEGORIES}

    out = {
        "note": "shares of classified prompts after dedup, cap and split; the paper's Table 1 counts API prompts",
        "paper_table1": PAPER_SHARES,
        "api_prompts": shares(Counter(api_categories), len(api_categories)),
        "all_prompts": shares(all_counts, all_total),
    }
    if getattr(classifier, "cv_pred", None):  # a classifier with calibration pairs; a labeler is taken as the truth
        adjusted = classifier.shares(api_categories) if correction.SHOWN else None
        if adjusted:
            out["api_prompts_adjusted"] = adjusted
        out["adjusted_note"] = correction.NOTE
    if getattr(classifier, "evaluation", None):  # trained with `taxonomy train --labels`: measured on the user's labels
        out["classifier_on_your_labels"] = classifier.evaluation
    return out


def write_report(report: dict, dropped: Iterable[dict], path: Path) -> None:
    """build_report.json: `report` with the dropped records (`dropped`, rows as dicts, in order) as its last entry,
    written a row at a time (a build of millions of prompts drops millions of records) in exactly the layout
    `json.dumps(..., indent=2)` gives."""
    head = json.dumps(report | {"dropped_records": []}, indent=2, ensure_ascii=False, default=str)
    tail = "[]\n}"
    assert head.endswith(tail)
    with open(path, "w", encoding="utf-8") as fh:
        sep = None
        for row in dropped:
            if sep is None:
                fh.write(head[: -len(tail)] + "[\n")
                sep = ""
            fh.write(sep + textwrap.indent(json.dumps(row, indent=2, ensure_ascii=False, default=str), "    "))
            sep = ",\n"
        fh.write(head + "\n" if sep is None else "\n  ]\n}\n")


def build_report(settings, *, outputs, ledger, infos: dict, stages, sources, classifier) -> dict:
    """The report (without its dropped-record list); raises if a validated record is neither written nor dropped.

    outputs: the build's `builders.writers.datasets.Outputs` (what it wrote, counted); ledger: its
    `builders.writers.ledger.Ledger` (ids and dropped records on disk)."""
    licences = sorted({s.license or "other" for s in sources})
    pii_notes = next((s.notes for s in stages if s.name == "pii"), {})
    privacy = {
        "user_ids": "pseudonymised",
        "pseudonym": "HMAC-SHA256 with a secret key (never written); `u_` + 16 hex digits",
        "pii": {s: (settings.pii_mode + "ed" if settings.pii_mode == "redact" else "dropped")
                if (settings.pii_scope == "all" or s == "train") else "not_scanned" for s in SPLITS},
        "pii_names": settings.pii_names,
        "pii_found": pii_notes.get("entities", {}),
    }
    report = {
        "instructkit_version": _version("instructkit"),
        "versions": {p: _version(p) for p in ("datasets", "polars", "datasketch", "presidio-analyzer", "scikit-learn")},
        "settings": settings.to_dict(),
        "license": settings.license or (licences[0] if len(licences) == 1 else "other"),
        "sources": [s.accounting() for s in sources],
        "stages": [s.report() for s in stages]
        + [{"name": "assemble", "in": outputs.final_prompts, "out": outputs.written_prompts,
            "dropped": ledger.reasons("assemble")}],
        "datasets": {name: {cfg: {sp: i["num_examples"] for sp, i in splits.items()} for cfg, splits in cfgs.items()}
                     for name, cfgs in infos.items()},
        "table6": _table6(pl.concat(outputs.counts)),
        "use_cases": _use_cases(outputs.api_categories(), outputs.category_counts, outputs.final_prompts, classifier),
        "privacy": privacy,
        "rankings": _rankings(outputs),
        "accounting": ledger.accounting(),
    }
    return report


def _rankings(outputs) -> dict:
    """What the RM data is made of: rankings by K, comparisons, pairs ranked equal (skipped), pairs per ranking."""
    rankings = sum(outputs.ranking_sizes.values())
    pairs = sum(k * (k - 1) // 2 * n for k, n in outputs.ranking_sizes.items()) - outputs.tied_pairs
    return {"by_k": {str(k): n for k, n in sorted(outputs.ranking_sizes.items())}, "rankings": rankings, "pairs": pairs,
            "tied_pairs_skipped": outputs.tied_pairs, "pairs_per_ranking": round(pairs / rankings, 2) if rankings else 0.0}
