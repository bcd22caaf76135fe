"""build_report.json: what the build read, kept, dropped (every record, with its reason) and made, and the check
that accounts for every validated record."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import polars as pl

from builders.stages.split import SPLITS
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


def _use_cases(prompts: pl.DataFrame, classifier=None) -> dict:
    def shares(df: pl.DataFrame) -> dict[str, dict]:
        counts = Counter(df["category"].to_list())
        total = max(1, df.height)
        return {c: {"count": counts.get(c, 0), "share": round(counts.get(c, 0) / total, 4)} for c in CATEGORIES}

    api = prompts.filter(pl.col("source") == "api")
    out = {
        "note": "shares of classified prompts after dedup, cap and split; the paper's Table 1 counts API prompts",
        "paper_table1": PAPER_SHARES,
        "api_prompts": shares(api),
        "all_prompts": shares(prompts),
    }
    adjusted = classifier.shares(api["category"].to_list()) if classifier is not None and hasattr(classifier, "shares") else None
    if adjusted:
        out["api_prompts_adjusted"] = adjusted
        out["adjusted_note"] = ("adjusted classify-and-count: API shares corrected with the confusion matrix of the "
                                "classifier's held-out predictions on its labeled set (cross-validated, or a tuned "
                                "model's calibration split); 95% bootstrap intervals over prompts and validation pairs")
    return out


def _accounting(validated_ids: dict[str, pl.Series], outputs: dict[str, pl.Series], dropped: pl.DataFrame) -> dict:
    """Check that every validated record is in an output or listed as dropped; a gap is a bug, so it raises."""
    acc = {}
    for kind, ids in validated_ids.items():
        used = ids.is_in(outputs[kind].implode())
        gone = ids.is_in(dropped.filter(pl.col("kind") == kind)["record_id"].implode())
        missing = ids.filter(~used & ~gone).sort()
        if missing.len():
            raise RuntimeError(f"accounting bug: {missing.len()} {kind} records neither written nor dropped, e.g. {missing.head(3).to_list()}")
        acc[kind + "s"] = {"validated": ids.n_unique(), "in_outputs": int(used.sum()), "dropped": int(gone.sum())}
    acc["rejected_at_validation"] = dropped.filter(pl.col("stage") == "validate").height
    acc["dropped_by_sources"] = dropped.filter(pl.col("kind") == "source_record").height
    acc["complete"] = True
    return acc


def unused_prompts(prompts: pl.DataFrame, demonstrations: pl.DataFrame, rankings: pl.DataFrame, ppo_sources: list[str]) -> pl.DataFrame:
    """Prompts that reach no dataset (no demonstration, no ranking, a source outside `ppo_sources`), as dropped rows;
    `demonstrations` and `rankings` need only their `prompt_id`."""
    from builders.stages import drop_rows

    has_label = pl.concat([demonstrations["prompt_id"], rankings["prompt_id"]]).unique()
    unused = prompts.filter(~pl.col("prompt_id").is_in(has_label.implode()) & ~pl.col("source").is_in(ppo_sources))
    return drop_rows(unused, "prompt_id", "prompt", "assemble", "no_demonstration_or_ranking_and_not_a_ppo_source")


def write_report(report: dict, dropped: pl.DataFrame, path: Path) -> None:
    """build_report.json: `report` with the dropped records as its last entry, written a row at a time (a build of
    millions of prompts drops millions of records) in exactly the layout `json.dumps(..., indent=2)` gives."""
    head = json.dumps(report | {"dropped_records": []}, indent=2, ensure_ascii=False, default=str)
    tail = "[]\n}"
    assert head.endswith(tail)
    with open(path, "w", encoding="utf-8") as fh:
        if dropped.height == 0:
            fh.write(head + "\n")
            return
        fh.write(head[: -len(tail)] + "[\n")
        sep = ""
        for batch in dropped.iter_slices(50_000):
            for row in batch.iter_rows(named=True):
                fh.write(sep + textwrap.indent(json.dumps(row, indent=2, ensure_ascii=False, default=str), "    "))
                sep = ",\n"
        fh.write("\n  ]\n}\n")


def build_report(settings, *, final_prompts: pl.DataFrame, sft_ids: pl.DataFrame, ranking_ids: pl.DataFrame, counts: pl.DataFrame,
                 infos: dict, stages, sources, unused: pl.DataFrame, validated: dict[str, pl.Series], dropped: pl.DataFrame,
                 classifier) -> dict:
    """The report (without its dropped-record list); raises if a validated record is neither written nor dropped.

    final_prompts: every prompt the stages kept (`META_COLS`); sft_ids / ranking_ids: the SFT rows' and rankings'
    (prompt_id, demonstration_id / ranking_id); counts: rows per dataset, split and source (`Outputs.counts`)."""
    ppo_ids = final_prompts.filter(pl.col("source").is_in(settings.ppo_sources))["prompt_id"]
    outputs = {
        "prompt": pl.concat([sft_ids["prompt_id"], ranking_ids["prompt_id"], ppo_ids]).unique(),
        "demonstration": sft_ids["demonstration_id"],
        "ranking": ranking_ids["ranking_id"],
    }
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
        + [{"name": "assemble", "in": final_prompts.height, "out": outputs["prompt"].len(),
            "dropped": dict(Counter(unused["reason"].to_list()))}],
        "datasets": {name: {cfg: {sp: i["num_examples"] for sp, i in splits.items()} for cfg, splits in cfgs.items()}
                     for name, cfgs in infos.items()},
        "table6": _table6(counts),
        "use_cases": _use_cases(final_prompts, classifier),
        "privacy": privacy,
        "accounting": _accounting(validated, outputs, dropped),
    }
    return report
