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
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.errors import InputError
from builders.memory import release_memory
from builders.stages import drop_rows
from builders.stages.split import SPLITS
from builders.writers.schemas import DATASETS, PAIRS_SCHEMA, PPO_SCHEMA, RANKINGS_SCHEMA, SFT_SCHEMA

ROWS_PER_SHARD = 250_000
PAIRS_AT_ONCE = 2_000  # rankings whose comparisons are made at once: a ranking of 9 makes 36, each with two texts
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


def unused_prompts(prompts: pl.DataFrame, demonstrations: pl.DataFrame, rankings: pl.DataFrame, ppo_sources: list[str]) -> pl.DataFrame:
    """Prompts that reach no dataset (no demonstration, no ranking, a source outside `ppo_sources`), as dropped rows;
    `demonstrations` and `rankings` need only their `prompt_id`."""
    has_label = pl.concat([demonstrations["prompt_id"], rankings["prompt_id"]]).unique()
    unused = prompts.filter(~pl.col("prompt_id").is_in(has_label.implode()) & ~pl.col("source").is_in(ppo_sources))
    return drop_rows(unused, "prompt_id", "prompt", "assemble", "no_demonstration_or_ranking_and_not_a_ppo_source")


def _write_shard(df: pl.DataFrame, schema: pa.Schema, path: Path) -> int:
    """One Parquet file of `df`'s rows; returns the rows' size in memory (the card's num_bytes). The rows are made
    contiguous first, so a shard assembled from parts is the same file as one sliced from a whole table. The size
    is that of the file's rows read back: an in-memory table's size depends on how its buffers were sliced (a
    split filtered from one big batch counted its whole list buffers), which made the card depend on batch size."""
    # each copy goes as soon as the next exists (callers hand their frame over unnamed): a shard of comparisons is
    # ~0.5 GB, and the frame, its Arrow copies and the file read back were all held at once
    table = df.select(schema.names).rechunk().to_arrow()
    del df
    table = table.cast(schema).combine_chunks()
    pq.write_table(table, path, compression="zstd")
    del table
    release_memory()
    return pq.read_table(path).nbytes


def _shard_path(folder: Path, split: str, i: int, n: int) -> Path:
    return folder / f"{split}-{i:05d}-of-{n:05d}.parquet"


class SortedShards:
    """The files `<split>-0000i-of-0000N.parquet` (ROWS_PER_SHARD rows each) of the whole table sorted by `key`
    (one or more columns, unique together),
    from parts that arrive in any order and never all at once: parts are spilled to `spill`; `finish` ranks every
    row's key within its split (the key columns only are read at once), sorts the parts' rows into the output files
    those ranks fall in, then writes one file at a time. Columns outside the schema (a sort key of its own) are
    not written."""

    def __init__(self, folder: Path, schema: pa.Schema, spill: Path, key: str | list[str] = "prompt_id"):
        self.folder, self.schema, self.spill = folder, schema, spill
        self.key = [key] if isinstance(key, str) else list(key)
        spill.mkdir(parents=True, exist_ok=True)
        self.parts: list[Path] = []

    def add(self, df: pl.DataFrame) -> None:
        if df.height:
            path = self.spill / f"part-{len(self.parts):06d}.parquet"
            df.write_parquet(path, compression="lz4")
            self.parts.append(path)

    def write_empty(self) -> dict[str, dict]:
        """A train split of no rows (the schema only), for a dataset the user allowed to be empty."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # no row group at all: `datasets` reads a 0-row group with a batch size of 0 and fails
        pq.ParquetWriter(_shard_path(self.folder, "train", 0, 1), self.schema, compression="zstd").close()
        return {"train": {"num_examples": 0, "num_bytes": 0}}

    def finish(self) -> dict[str, dict]:
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = pl.concat([pl.read_parquet(p, columns=["split", *self.key]).select(
            "split", *self.key, pl.lit(j, dtype=pl.UInt32).alias("_part"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("_idx"))
            for j, p in enumerate(self.parts)]) if self.parts else None
        totals, shards = {}, []
        for split in SPLITS if keys is not None else ():
            ranked = keys.filter(pl.col("split") == split).sort(self.key)
            if ranked.height:
                totals[split] = ranked.height
                shards.append(ranked.select("_part", "_idx", pl.lit(split).alias("split"),
                                            (pl.int_range(pl.len(), dtype=pl.UInt32) // ROWS_PER_SHARD).alias("_shard")))
        del keys
        where = pl.concat(shards) if shards else None
        for j, path in enumerate(self.parts):  # rows to the file they belong in
            df = pl.read_parquet(path).with_row_index("_idx")
            df = df.join(where.filter(pl.col("_part") == j).drop("_part", "split"), on="_idx", how="left").drop("_idx")
            for (split, i), rows in df.partition_by("split", "_shard", as_dict=True).items():
                rows.drop("_shard").write_parquet(self.spill / f"{split}-{i:05d}-{j:06d}.parquet", compression="lz4")
            path.unlink()
        info = {}
        for split, total in totals.items():
            n = -(-total // ROWS_PER_SHARD)
            size = 0
            for i in range(n):
                files = sorted(self.spill.glob(f"{split}-{i:05d}-*.parquet"))
                # the rows are handed to _write_shard unnamed, so it can let them go once copied
                size += _write_shard(pl.concat([pl.read_parquet(f) for f in files]).sort(self.key), self.schema,
                                     _shard_path(self.folder, split, i, n))
                release_memory()  # a shard of comparisons is ~1 GB in memory: its pages go back before the next
                for f in files:
                    f.unlink()
            info[split] = {"num_examples": total, "num_bytes": size}
        return info


class Outputs:
    """The three datasets, assembled a batch of final prompts at a time (`add`): each batch's SFT rows, comparisons,
    rankings and PPO rows go to disk at once (`SortedShards`), so no dataset is ever whole in memory; the ids the
    accounting checks and the prompts that reach no dataset go to the build's ledger (on disk), and what stays is
    counts and the API prompts' use cases (one small code a prompt, in order: the report's bootstrap draws from
    them). Every batch holds each of its prompts' labels, so a batch's rows are the whole table's rows of those
    prompts."""

    def __init__(self, out: Path, ppo_sources: list[str], ledger):
        spill = out / ".spill-out"
        self.spill, self.ppo_sources, self.ledger = spill, ppo_sources, ledger
        self.shards = {
            ("sft", "default"): SortedShards(out / "sft" / "data", SFT_SCHEMA, spill / "sft", ["prompt_id", "demonstration_id"]),
            ("rm", "default"): SortedShards(out / "rm" / "data", PAIRS_SCHEMA, spill / "pairs", ["prompt_id", "group", "_n"]),
            ("rm", "rankings"): SortedShards(out / "rm" / "rankings", RANKINGS_SCHEMA, spill / "rankings", ["prompt_id", "ranking_id"]),
            ("ppo", "default"): SortedShards(out / "ppo" / "data", PPO_SCHEMA, spill / "ppo"),
        }
        self.counts: list[pl.DataFrame] = []  # rows per dataset, split and source (Table 6)
        self.final_prompts = self.written_prompts = 0
        self.category_counts: Counter = Counter()
        self._api_categories: list[pl.Series] = []
        self.ranking_sizes: Counter = Counter()  # K (completions per ranking) → rankings
        self.tied_pairs = 0  # pairs of completions a labeler ranked equal: no comparison to learn from

    def add(self, batch) -> None:
        """A batch of final prompts (Tables) with every demonstration and ranking of those prompts."""
        sft, rankings = sft_table(batch), rankings_table(batch)
        ppo = batch.prompts.filter(pl.col("source").is_in(self.ppo_sources)).select(PROMPT_COLS)
        for key, rows in ((("sft", "default"), sft), (("rm", "rankings"), rankings), (("ppo", "default"), ppo)):
            self.shards[key].add(rows)
        counts = lambda name, df: df.group_by("split", "source").len().with_columns(pl.lit(name).alias("dataset"))  # noqa: E731
        self.counts += [counts("SFT", sft), counts("PPO", ppo)]
        self.ranking_sizes.update(dict(rankings["ranks"].list.len().value_counts().iter_rows()))
        for i in range(0, rankings.height, PAIRS_AT_ONCE):  # a ranking's comparisons are all made at once
            pairs = pairs_table(rankings.slice(i, PAIRS_AT_ONCE)).with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).over("group").alias("_n"))
            self.shards["rm", "default"].add(pairs)
            self.counts.append(counts("RM", pairs))
            k = rankings.slice(i, PAIRS_AT_ONCE)["ranks"].list.len()
            self.tied_pairs += int((k * (k - 1) // 2).sum()) - pairs.height
        written = pl.concat([sft["prompt_id"], rankings["prompt_id"], ppo["prompt_id"]]).unique()
        for kind, ids in (("prompt", written), ("demonstration", sft["demonstration_id"]), ("ranking", rankings["ranking_id"])):
            self.ledger.ids(f"written-{kind}", ids)
        self.ledger.drop(unused_prompts(batch.prompts, sft, rankings, self.ppo_sources))
        self.final_prompts += batch.prompts.height
        self.written_prompts += written.len()
        self.category_counts.update(dict(batch.prompts.group_by("category").len().iter_rows()))
        self._api_categories.append(batch.prompts.filter(pl.col("source") == "api")["category"].cast(pl.Categorical))

    def api_categories(self) -> list[str]:
        """The use case of every API prompt, in the order the batches came."""
        return pl.concat(self._api_categories).cast(pl.String).to_list() if self._api_categories else []

    def finish(self, allow_empty: bool = False) -> dict[str, dict[str, dict]]:
        """Write every file; returns dataset -> config -> split -> {num_examples, num_bytes}. A config with no rows
        is left without files (an error for the caller to raise), or with `allow_empty` written as a 0-row train
        split that `load_dataset` reads with the right features."""
        infos: dict[str, dict] = {}
        for (name, cfg), shards in self.shards.items():
            infos.setdefault(name, {})[cfg] = shards.finish() or (shards.write_empty() if allow_empty else {})
        shutil.rmtree(self.spill, ignore_errors=True)
        return infos


_LABELS = {"sft": ("demonstrations", "demonstration"), "rm": ("rankings", "ranking")}


def _why_empty(name: str, accounting: dict, ppo_sources: list[str]) -> str:
    """One clause on why a dataset has no rows, from the build's accounting."""
    if name == "ppo":
        return f"ppo: 0 prompts after the pipeline: no kept prompt has a source in --ppo-sources ({', '.join(ppo_sources)})"
    kind, one = _LABELS[name]
    what = "comparisons" if name == "rm" else "demonstrations"
    validated = accounting[kind]["validated"]
    if not validated:
        return f"{name}: 0 {what} after the pipeline: the input has no {one} records"
    return (f"{name}: 0 {what} after the pipeline: none of the {validated:,} {kind} read reached it (with "
            f"--allow-empty, build_report.json lists each dropped record and why)")


def write_outputs(out: Path, settings, *, outputs: Outputs, ledger, stages, sources, classifier, seconds: dict) -> dict:
    """sft/, rm/, ppo/ (with cards) and build_report.json from what `outputs` gathered and `ledger` holds (the
    prompts that reach no dataset are among its dropped records). Returns the report without its dropped-record
    list (that is in build_report.json)."""
    from builders.writers.card import write_card
    from builders.writers.report import build_report, write_report

    infos = outputs.finish(settings.allow_empty)
    for s in sources:
        ledger.drop(s.dropped_rows())
    report = build_report(settings, outputs=outputs, ledger=ledger, infos=infos, stages=stages, sources=sources,
                          classifier=classifier)
    empty = [name for name, cfgs in infos.items() if not cfgs["default"]]
    if empty:
        raise InputError("; ".join(_why_empty(name, report["accounting"], settings.ppo_sources) for name in empty)
                         + ". Nothing was written; give --allow-empty to write empty datasets anyway")
    for name, cfgs in infos.items():
        write_card(out / name, name, {cfg: (*DATASETS[name][cfg], splits) for cfg, splits in cfgs.items()}, report)
    write_report(report, ledger.dropped_rows(), out / "build_report.json")
    report["dropped_count"] = ledger.count()
    report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}  # timings vary run to run: not in the file
    return report
