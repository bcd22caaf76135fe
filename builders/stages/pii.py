"""Stage 5: find and redact (or drop) personal data, recall first (`builders/pii/`: presidio-analyzer's
recognizers, the phonenumbers parser, address and identifier patterns, and spaCy's English NER with name cues).

Every text field is scanned: prompts with their chat context, demonstrations and ranked completions. With
`names="all"` (the default) every person's name found is redacted; `names="personal"` keeps names of public
figures that carry no personal cue (see `builders/pii/names.py`).
"""

from __future__ import annotations

from collections import Counter

import polars as pl

from builders.pii.scanner import NAME_MODES, SPACY_MODEL, Finding, PiiScanner  # noqa: F401 (the stage's public names)
from builders.schema import Tables
from builders.stages import Context, Stage, StageResult, drop_rows, follow_prompts

NAME = "pii"


def scanner_for(names: str, scanner: PiiScanner | None = None, progress: bool = True) -> PiiScanner:
    """The scanner a build uses: the one given (it must find names the way the settings say) or a new one."""
    if scanner is None:
        return PiiScanner(names=names, progress=progress)
    if scanner.names != names:
        raise ValueError(f"the PII scanner given finds names={scanner.names!r}, the settings say pii_names={names!r}")
    return scanner


def redact(text: str, findings: list[Finding]) -> str:
    """Replace each finding with <ENTITY>; overlapping findings merge, the longer (then higher-scored) names it."""
    if not findings:
        return text
    spans = sorted(findings, key=lambda f: (f.start, -(f.end - f.start), -f.score))
    merged: list[list] = []
    for f in spans:
        if merged and f.start < merged[-1][1]:
            if f.end > merged[-1][1]:
                merged[-1][1] = f.end
            continue
        merged.append([f.start, f.end, f.entity])
    out, pos = [], 0
    for start, end, entity in merged:
        out.append(text[pos:start])
        out.append(f"<{entity}>")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def remove_pii(tables: Tables, scanner: PiiScanner, *, mode: str = "redact", scope: str = "all",
               engine=None) -> tuple[Tables, StageResult]:
    """Redact or drop personal data in prompts, demonstrations and ranked completions of the splits in scope."""
    counts_in = tables.counts()
    split_of = tables.prompts.select("prompt_id", "split")
    in_scope = pl.lit(True) if scope == "all" else pl.col("split") == "train"

    prompts = tables.prompts.with_row_index("_i")
    demos = tables.demonstrations.join(split_of, on="prompt_id", how="left").with_row_index("_i")
    rankings = tables.rankings.join(split_of, on="prompt_id", how="left").with_row_index("_i")

    # Flatten every text in scope into one list: (table, row, position) -> text.
    p_rows = prompts.filter(in_scope).select("_i", "messages").explode("messages").with_columns(
        pl.int_range(pl.len()).over("_i").alias("_j")).unnest("messages")
    d_rows = demos.filter(in_scope).select("_i", pl.lit(0).alias("_j"), pl.col("completion").alias("content"))
    r_rows = rankings.filter(in_scope).select("_i", "completions").explode("completions").with_columns(
        pl.int_range(pl.len()).over("_i").alias("_j")).rename({"completions": "content"})
    texts = p_rows["content"].to_list() + d_rows["content"].to_list() + r_rows["content"].to_list()
    findings = scanner.scan(texts, engine=engine)
    entities = Counter(f.entity for fs in findings for f in fs)
    flagged = [bool(fs) for fs in findings]
    redacted = [redact(t, fs) for t, fs in zip(texts, findings)]

    a, b = p_rows.height, p_rows.height + d_rows.height
    p_hits = p_rows.select("_i", "_j").with_columns(pl.Series("_new", redacted[:a], dtype=pl.String), pl.Series("_hit", flagged[:a], dtype=pl.Boolean))
    d_hits = d_rows.select("_i").with_columns(pl.Series("_new", redacted[a:b], dtype=pl.String), pl.Series("_hit", flagged[a:b], dtype=pl.Boolean))
    r_hits = r_rows.select("_i", "_j").with_columns(pl.Series("_new", redacted[b:], dtype=pl.String), pl.Series("_hit", flagged[b:], dtype=pl.Boolean))
    hit_p = p_hits.filter("_hit")["_i"].unique()
    hit_d = d_hits.filter("_hit")["_i"].unique()
    hit_r = r_hits.filter("_hit")["_i"].unique()
    dropped = []
    if mode == "drop":
        gone = prompts.filter(pl.col("_i").is_in(hit_p.implode()))
        dropped.append(drop_rows(gone, "prompt_id", "prompt", NAME, "pii_in_prompt"))
        prompts = prompts.filter(~pl.col("_i").is_in(hit_p.implode()))
        dropped.append(drop_rows(demos.filter(pl.col("_i").is_in(hit_d.implode())), "demonstration_id", "demonstration", NAME, "pii_in_demonstration"))
        dropped.append(drop_rows(rankings.filter(pl.col("_i").is_in(hit_r.implode())), "ranking_id", "ranking", NAME, "pii_in_completion"))
        demos = demos.filter(~pl.col("_i").is_in(hit_d.implode()))
        rankings = rankings.filter(~pl.col("_i").is_in(hit_r.implode()))
    else:
        new_msgs = (p_hits.join(prompts.select("_i", "messages").explode("messages").with_columns(
            pl.int_range(pl.len()).over("_i").alias("_j")).unnest("messages"), on=["_i", "_j"])
            .sort(["_i", "_j"]).group_by("_i", maintain_order=True)
            .agg(pl.struct(pl.col("role"), pl.col("_new").alias("content")).alias("_messages")))
        prompts = prompts.join(new_msgs, on="_i", how="left").with_columns(
            pl.coalesce("_messages", "messages").alias("messages")).drop("_messages")
        prompts = prompts.with_columns(pl.col("messages").list.last().struct.field("content").alias("text"))
        demos = demos.join(d_hits.select("_i", "_new"), on="_i", how="left").with_columns(
            pl.coalesce("_new", "completion").alias("completion")).drop("_new")
        new_comps = r_hits.sort(["_i", "_j"]).group_by("_i", maintain_order=True).agg(pl.col("_new").alias("_comps"))
        rankings = rankings.join(new_comps, on="_i", how="left").with_columns(
            pl.coalesce("_comps", "completions").alias("completions")).drop("_comps")

    prompts = prompts.drop("_i").sort("prompt_id")
    out = Tables(prompts, demos.drop("_i", "split"), rankings.drop("_i", "split"))
    dem2, rank2, follow = follow_prompts(out, prompts["prompt_id"], NAME, "prompt_dropped_for_pii")
    out = Tables(prompts, dem2, rank2)
    notes = {
        "mode": mode,
        "scope": scope,
        "names": scanner.names,
        "texts_scanned": len(texts),
        "texts_with_pii": int(sum(flagged)),
        "records_with_pii": {"prompts": hit_p.len(), "demonstrations": hit_d.len(), "rankings": hit_r.len()},
        "entities": dict(sorted(entities.items())),
        "splits_scanned": ["train", "validation", "test"] if scope == "all" else ["train"],
    }
    all_dropped = pl.concat(dropped + [follow]) if dropped else follow
    return out, StageResult(NAME, counts_in, out.counts(), all_dropped, notes)


def merge_notes(parts: list[dict]) -> dict:
    """The notes of one `remove_pii` run over the whole table, from its runs over parts of it."""
    out = dict(parts[0])
    out["texts_scanned"] = sum(p["texts_scanned"] for p in parts)
    out["texts_with_pii"] = sum(p["texts_with_pii"] for p in parts)
    out["records_with_pii"] = {k: sum(p["records_with_pii"][k] for p in parts) for k in parts[0]["records_with_pii"]}
    entities = Counter()
    for p in parts:
        entities.update(p["entities"])
    out["entities"] = dict(sorted(entities.items()))
    return out


def _run(tables: Tables, ctx: Context) -> tuple[Tables, StageResult]:
    return remove_pii(tables, ctx.scanner, mode=ctx.settings.pii_mode, scope=ctx.settings.pii_scope, engine=ctx.engine)


STAGE = Stage(NAME, _run, per_batch=True, merge_notes=merge_notes)
