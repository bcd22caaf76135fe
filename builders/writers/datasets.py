"""Assemble and write the three dataset folders (Hub layout) and build_report.json from the final tables.

Which prompts go where (as in the paper, each dataset is its own prompt set):
- sft: one row per labeler demonstration (prompt + desired response);
- rm:  one row per comparison (default config) from every K-way ranking, and one row per ranking (`rankings`);
- ppo: every prompt whose source is in `ppo_sources` (the paper: customer/API prompts), without labels.
A prompt with no demonstration, no ranking and a source outside `ppo_sources` reaches no dataset and is listed
in the report with that reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.stages.split import SPLITS
from builders.writers.schemas import DATASETS, PAIRS_SCHEMA, RANKINGS_SCHEMA, SFT_SCHEMA

ROWS_PER_SHARD = 250_000
META_COLS = ["prompt_id", "user", "source", "prompt_type", "category", "split"]
PROMPT_COLS = ["prompt_id", "user", "source", "prompt_type", "category", "split", pl.col("messages").alias("prompt")]


def _assistant_of(content: pl.Expr) -> pl.Expr:
    """One assistant message holding `content`, as a conversational list."""
    return pl.concat_list(pl.struct(pl.lit("assistant").alias("role"), content.alias("content")))


def _assistant(col: str) -> pl.Expr:
    return _assistant_of(pl.col(col))


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
    """Every ranking of K gives its C(K,2) comparisons (i < j, in ranking then i then j order), tied pairs
    excepted; `group` keeps one ranking's pairs together. Built with list expressions: millions of pairs never
    exist as Python objects."""
    base = ["prompt_id", "user", "source", "prompt_type", "category", "split", "prompt"]
    i, j = pl.col("_i"), pl.col("_j")
    rank_i, rank_j = pl.col("ranks").list.get(i), pl.col("ranks").list.get(j)
    winner = pl.when(rank_i < rank_j).then(i).otherwise(j)
    loser = pl.when(rank_i < rank_j).then(j).otherwise(i)
    pairs = (rankings.select(*base, pl.col("ranking_id").alias("group"), "completions", "ranks",
                             pl.int_ranges(0, pl.col("ranks").list.len()).alias("_i"))
             .explode("_i")
             .with_columns(pl.int_ranges(pl.col("_i") + 1, pl.col("ranks").list.len()).alias("_j"))
             .explode("_j")
             .filter(j.is_not_null() & (rank_i != rank_j))
             .with_columns(winner.alias("_w"), loser.alias("_l")))
    return pairs.select(
        *base[:-1], "prompt", "group",
        _assistant_of(pl.col("completions").list.get(pl.col("_w"))).alias("chosen"),
        _assistant_of(pl.col("completions").list.get(pl.col("_l"))).alias("rejected"),
        pl.col("ranks").list.get(pl.col("_w")).alias("chosen_rank"),
        pl.col("ranks").list.get(pl.col("_l")).alias("rejected_rank"),
    )


def _write_shard(df: pl.DataFrame, schema: pa.Schema, path: Path) -> int:
    """One Parquet file of `df`'s rows; returns the rows' size in memory (the card's num_bytes). The rows are made
    contiguous first, so a shard assembled from parts is the same file as one sliced from a whole table. The size
    is that of the file's rows read back: an in-memory table's size depends on how its buffers were sliced (a
    split filtered from one big batch counted its whole list buffers), which made the card depend on batch size."""
    table = df.select(schema.names).rechunk().to_arrow().cast(schema).combine_chunks()
    pq.write_table(table, path, compression="zstd")
    return pq.read_table(path).nbytes


def _shard_path(folder: Path, split: str, i: int, n: int) -> Path:
    return folder / f"{split}-{i:05d}-of-{n:05d}.parquet"


def write_splits(df: pl.DataFrame, schema: pa.Schema, folder: Path) -> dict[str, dict]:
    """data/<split>-0000i-of-0000N.parquet per non-empty split, in `df`'s row order; returns split ->
    {num_examples, num_bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    for split in SPLITS:
        part = df.filter(pl.col("split") == split)
        if part.height == 0:
            continue
        n = -(-part.height // ROWS_PER_SHARD)
        size = sum(_write_shard(part.slice(i * ROWS_PER_SHARD, ROWS_PER_SHARD), schema, _shard_path(folder, split, i, n))
                   for i in range(n))
        info[split] = {"num_examples": part.height, "num_bytes": size}
    return info


class SortedShards:
    """The same files as `write_splits` of the whole table sorted by `key` (unique), from parts that arrive in any
    order and never all at once: parts are spilled to `spill`; `finish` finds each output file's key range, sorts
    the parts' rows into those ranges, then writes one file at a time."""

    def __init__(self, folder: Path, schema: pa.Schema, spill: Path, key: str = "prompt_id"):
        self.folder, self.schema, self.spill, self.key = folder, schema, spill, key
        spill.mkdir(parents=True, exist_ok=True)
        self.parts: list[Path] = []

    def add(self, df: pl.DataFrame) -> None:
        if df.height:
            path = self.spill / f"part-{len(self.parts):06d}.parquet"
            df.write_parquet(path, compression="lz4")
            self.parts.append(path)

    def finish(self) -> dict[str, dict]:
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = (pl.concat([pl.read_parquet(p, columns=["split", self.key]) for p in self.parts])
                if self.parts else pl.DataFrame(schema={"split": pl.String, self.key: pl.String}))
        firsts, totals = {}, {}
        for split in SPLITS:
            ids = keys.filter(pl.col("split") == split)[self.key].sort()
            if ids.len():
                totals[split] = ids.len()
                firsts[split] = ids.gather(list(range(0, ids.len(), ROWS_PER_SHARD)))  # each file's smallest key
        del keys
        for j, path in enumerate(self.parts):  # rows to the file they belong in
            df = pl.read_parquet(path)
            for split, first in firsts.items():
                part = df.filter(pl.col("split") == split)
                if part.height:
                    shard = first.search_sorted(part[self.key], side="right") - 1
                    for i, rows in part.with_columns(pl.Series("_shard", shard)).partition_by("_shard", as_dict=True).items():
                        rows.drop("_shard").write_parquet(self.spill / f"{split}-{i[0]:05d}-{j:06d}.parquet", compression="lz4")
            path.unlink()
        info = {}
        for split, first in firsts.items():
            n = first.len()
            size = 0
            for i in range(n):
                files = sorted(self.spill.glob(f"{split}-{i:05d}-*.parquet"))
                rows = pl.concat([pl.read_parquet(f) for f in files]).sort(self.key)
                size += _write_shard(rows, self.schema, _shard_path(self.folder, split, i, n))
                for f in files:
                    f.unlink()
            info[split] = {"num_examples": totals[split], "num_bytes": size}
        return info


def write_outputs(out: Path, settings, *, final_prompts: pl.DataFrame, labeled, ppo: SortedShards, stages, sources, unused,
                  validated: dict[str, pl.Series], classifier, seconds: dict) -> dict:
    """sft/, rm/, ppo/ (with cards) and build_report.json.

    final_prompts: every prompt that came through the stages (META_COLS); labeled: Tables holding at least the
    prompts with a demonstration or ranking (all columns) and the final demonstrations and rankings; ppo: the PPO
    rows, already added. Returns the report without its dropped-record list (that is in build_report.json)."""
    from builders.writers.card import write_card
    from builders.writers.report import build_report, write_report

    sft = sft_table(labeled)
    rankings = rankings_table(labeled)
    pairs = pairs_table(rankings)
    ppo_meta = final_prompts.filter(pl.col("source").is_in(settings.ppo_sources))

    infos = {
        "sft": {"default": write_splits(sft, SFT_SCHEMA, out / "sft" / "data")},
        "rm": {"default": write_splits(pairs, PAIRS_SCHEMA, out / "rm" / "data"),
               "rankings": write_splits(rankings, RANKINGS_SCHEMA, out / "rm" / "rankings")},
        "ppo": {"default": ppo.finish()},
    }
    shutil.rmtree(ppo.spill, ignore_errors=True)
    dropped = pl.concat([s.dropped_rows() for s in sources] + [s.dropped for s in stages] + [unused])
    report = build_report(settings, final_prompts=final_prompts, sft=sft, pairs=pairs, rankings=rankings, ppo_meta=ppo_meta,
                          infos=infos, stages=stages, sources=sources, unused=unused, validated=validated, dropped=dropped,
                          classifier=classifier)
    for name, cfgs in infos.items():
        write_card(out / name, name, {cfg: (*DATASETS[name][cfg], splits) for cfg, splits in cfgs.items()}, report)
    write_report(report, dropped.sort(["stage", "kind", "record_id", "reason"], maintain_order=True), out / "build_report.json")
    report["dropped_count"] = dropped.height
    report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}  # timings vary run to run: not in the file
    return report
