"""Assemble and write the three dataset folders (Hub layout) and build_report.json from the final tables.

Which prompts go where (as in the paper, each dataset is its own prompt set):
- sft: one row per labeler demonstration (prompt + desired response);
- rm:  one row per comparison (default config) from every K-way ranking, and one row per ranking (`rankings`);
- ppo: every prompt whose source is in `ppo_sources` (the paper: customer/API prompts), without labels.
A prompt with no demonstration, no ranking and a source outside `ppo_sources` reaches no dataset and is listed
in the report with that reason.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.stages.split import SPLITS
from taxonomy.categories import CATEGORIES, PAPER_SHARES

MSG = pa.struct([("role", pa.string()), ("content", pa.string())])
MSGS = pa.list_(MSG)
BASE = [("prompt_id", pa.string()), ("user", pa.string()), ("source", pa.string()), ("prompt_type", pa.string()),
        ("category", pa.string())]
SFT_SCHEMA = pa.schema(BASE + [("demonstration_id", pa.string()), ("messages", MSGS), ("prompt", MSGS), ("completion", MSGS)])
PAIRS_SCHEMA = pa.schema(BASE + [("group", pa.string()), ("prompt", MSGS), ("chosen", MSGS), ("rejected", MSGS),
                                 ("chosen_rank", pa.int64()), ("rejected_rank", pa.int64())])
RANKINGS_SCHEMA = pa.schema(BASE + [("ranking_id", pa.string()), ("prompt", MSGS), ("completions", pa.list_(pa.string())),
                                    ("ranks", pa.list_(pa.int64()))])
PPO_SCHEMA = pa.schema(BASE + [("prompt", MSGS)])
ROWS_PER_SHARD = 250_000
PROMPT_COLS = ["prompt_id", "user", "source", "prompt_type", "category", "split", pl.col("messages").alias("prompt")]


def _assistant(col: str) -> pl.Expr:
    return pl.concat_list(pl.struct(pl.lit("assistant").alias("role"), pl.col(col).alias("content")))


def sft_table(tables) -> pl.DataFrame:
    return (
        tables.demonstrations.join(tables.prompts.select(PROMPT_COLS), on="prompt_id", how="inner")
        .with_columns(_assistant("completion").alias("completion"))
        .with_columns(pl.concat_list("prompt", "completion").alias("messages"))
        .sort(["prompt_id", "demonstration_id"])
    )


def rankings_table(tables) -> pl.DataFrame:
    return tables.rankings.join(tables.prompts.select(PROMPT_COLS), on="prompt_id", how="inner").sort(["prompt_id", "ranking_id"])


def pairs_table(rankings: pl.DataFrame) -> pl.DataFrame:
    """Every ranking of K gives its C(K,2) comparisons, tied pairs excepted; `group` keeps one ranking's pairs together."""
    rows = []
    for r in rankings.iter_rows(named=True):
        comps, ranks = r["completions"], r["ranks"]
        for i in range(len(comps)):
            for j in range(i + 1, len(comps)):
                if ranks[i] == ranks[j]:
                    continue
                w, l = (i, j) if ranks[i] < ranks[j] else (j, i)
                rows.append({k: r[k] for k in ("prompt_id", "user", "source", "prompt_type", "category", "split", "prompt")}
                            | {"group": r["ranking_id"],
                               "chosen": [{"role": "assistant", "content": comps[w]}],
                               "rejected": [{"role": "assistant", "content": comps[l]}],
                               "chosen_rank": ranks[w], "rejected_rank": ranks[l]})
    schema = dict(pl.from_arrow(PAIRS_SCHEMA.empty_table()).schema)
    return pl.DataFrame(rows, schema=schema | {"split": pl.String})


def ppo_table(tables, ppo_sources: list[str]) -> pl.DataFrame:
    return tables.prompts.filter(pl.col("source").is_in(ppo_sources)).select(PROMPT_COLS).sort("prompt_id")


def write_splits(df: pl.DataFrame, schema: pa.Schema, folder: Path) -> dict[str, dict]:
    """data/<split>-0000i-of-0000N.parquet per non-empty split; returns split -> {num_examples, num_bytes, files}."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    for split in SPLITS:
        part = df.filter(pl.col("split") == split)
        if part.height == 0:
            continue
        table = part.select(schema.names).to_arrow().cast(schema)
        n = max(1, -(-table.num_rows // ROWS_PER_SHARD))
        for i in range(n):
            chunk = table.slice(i * ROWS_PER_SHARD, ROWS_PER_SHARD)
            pq.write_table(chunk, folder / f"{split}-{i:05d}-of-{n:05d}.parquet", compression="zstd")
        info[split] = {"num_examples": table.num_rows, "num_bytes": table.nbytes}
    return info


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _table6(sft: pl.DataFrame, pairs: pl.DataFrame, ppo: pl.DataFrame) -> list[dict]:
    rows = []
    for name, df in (("SFT", sft), ("RM", pairs), ("PPO", ppo)):
        for split in SPLITS:
            part = df.filter(pl.col("split") == split)
            rows.append({"dataset": name, "split": split,
                         "labeler": part.filter(pl.col("source") == "labeler").height,
                         "api": part.filter(pl.col("source") == "api").height})
    return rows


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
        out["adjusted_note"] = ("adjusted classify-and-count: API shares corrected with the classifier's cross-validated "
                                "confusion matrix; 95% bootstrap intervals over prompts and validation pairs")
    return out


def _accounting(result, outputs: dict[str, set[str]], dropped: pl.DataFrame) -> dict:
    """Check that every validated record is in an output or listed as dropped; a gap is a bug, so it raises."""
    acc = {}
    v = result.validated
    for kind, ids in (("prompt", v.prompts["prompt_id"]), ("demonstration", v.demonstrations["demonstration_id"]),
                      ("ranking", v.rankings["ranking_id"])):
        ids = set(ids.to_list())
        gone = set(dropped.filter(pl.col("kind") == kind)["record_id"].to_list())
        used = outputs[kind]
        missing = sorted(ids - used - gone)
        if missing:
            raise RuntimeError(f"accounting bug: {len(missing)} {kind} records neither written nor dropped, e.g. {missing[:3]}")
        acc[kind + "s"] = {"validated": len(ids), "in_outputs": len(ids & used), "dropped": len(ids & gone)}
    acc["rejected_at_validation"] = dropped.filter(pl.col("stage") == "validate").height
    acc["dropped_by_sources"] = dropped.filter(pl.col("kind") == "source_record").height
    acc["complete"] = True
    return acc


def write_all(result, settings, out: Path) -> dict:
    from builders.writers.card import write_card

    tables = result.tables
    sft = sft_table(tables)
    rankings = rankings_table(tables)
    pairs = pairs_table(rankings)
    ppo = ppo_table(tables, settings.ppo_sources)

    infos = {
        "sft": {"default": write_splits(sft, SFT_SCHEMA, out / "sft" / "data")},
        "rm": {"default": write_splits(pairs, PAIRS_SCHEMA, out / "rm" / "data"),
               "rankings": write_splits(rankings, RANKINGS_SCHEMA, out / "rm" / "rankings")},
        "ppo": {"default": write_splits(ppo, PPO_SCHEMA, out / "ppo" / "data")},
    }
    dropped = pl.concat([s.dropped_rows() for s in result.sources] + [s.dropped for s in result.stages] + [result.unused])
    outputs = {
        "prompt": set(sft["prompt_id"].to_list()) | set(rankings["prompt_id"].to_list()) | set(ppo["prompt_id"].to_list()),
        "demonstration": set(sft["demonstration_id"].to_list()),
        "ranking": set(rankings["ranking_id"].to_list()),
    }
    licences = sorted({s.license or "other" for s in result.sources})
    privacy = {
        "user_ids": "pseudonymised",
        "pseudonym": "HMAC-SHA256 with a secret key (never written); `u_` + 16 hex digits",
        "pii": {s: (settings.pii_mode + "ed" if settings.pii_mode == "redact" else "dropped")
                if (settings.pii_scope == "all" or s == "train") else "not_scanned" for s in SPLITS},
    }
    report = {
        "instructkit_version": _version("instructkit"),
        "versions": {p: _version(p) for p in ("datasets", "polars", "datasketch", "presidio-analyzer", "scikit-learn")},
        "settings": settings.to_dict(),
        "license": settings.license or (licences[0] if len(licences) == 1 else "other"),
        "sources": [s.accounting() for s in result.sources],
        "stages": [s.report() for s in result.stages]
        + [{"name": "assemble", "in": tables.prompts.height, "out": len(outputs["prompt"]),
            "dropped": dict(Counter(result.unused["reason"].to_list()))}],
        "datasets": {name: {cfg: {sp: i["num_examples"] for sp, i in splits.items()} for cfg, splits in cfgs.items()}
                     for name, cfgs in infos.items()},
        "table6": _table6(sft, pairs, ppo),
        "use_cases": _use_cases(tables.prompts, result.classifier),
        "privacy": privacy,
        "accounting": _accounting(result, outputs, dropped),
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "dropped_records": dropped.sort(["stage", "kind", "record_id"]).to_dicts(),
    }
    schemas = {"sft": {"default": SFT_SCHEMA}, "rm": {"default": PAIRS_SCHEMA, "rankings": RANKINGS_SCHEMA},
               "ppo": {"default": PPO_SCHEMA}}
    dirs = {"default": "data", "rankings": "rankings"}
    for name, cfgs in infos.items():
        write_card(out / name, name, {cfg: (schemas[name][cfg], dirs[cfg], splits) for cfg, splits in cfgs.items()}, report)
    report_for_file = {k: v for k, v in report.items() if k != "seconds"}  # timings vary run to run
    (out / "build_report.json").write_text(json.dumps(report_for_file, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return report

