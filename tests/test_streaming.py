"""The build streams: two passes over the input, validated rows spilled to disk, outputs sorted into their files
from parts. Its files must be the same byte for byte however small the chunks: many tiny chunks and batches
against one chunk and one batch (the whole input in memory)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import builders.writers.datasets as ds
from builders.writers.report import write_report
from builders.writers.schemas import PPO_SCHEMA
from builders.errors import InputError
from builders.pipeline import build
from builders.settings import BuildSettings
from tests.conftest import write_jsonl


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _both_builds(settings: BuildSettings, tmp_path: Path, scanner, classifier, **small) -> tuple[dict, dict]:
    """(many chunks, one chunk): the same settings and output folder name (the report names it)."""
    files, out = [], tmp_path / "out"
    for run, sizes in (("streamed", small), ("in_memory", {"chunk_rows": 10**9, "batch_rows": 10**9})):
        build(BuildSettings(**{**settings.to_dict(), "out": str(out)}), classifier=classifier, scanner=scanner,
              progress=False, **sizes)
        files.append(_files(out.rename(tmp_path / run)))
    return files[0], files[1]


@pytest.mark.parametrize("rows_per_file", [50, 250_000])
def test_streamed_sample_build_is_the_in_memory_build(rows_per_file, tmp_path, scanner, classifier, monkeypatch):
    monkeypatch.setattr(ds, "ROWS_PER_SHARD", rows_per_file)
    streamed, in_memory = _both_builds(BuildSettings(), tmp_path, scanner, classifier, chunk_rows=7, batch_rows=111)
    assert streamed.keys() == in_memory.keys()
    assert len([p for p in streamed if p.parts[0] == "ppo"]) > (10 if rows_per_file == 50 else 1)
    assert [p for p in streamed if streamed[p] != in_memory[p]] == []


def test_streamed_build_of_a_log_with_duplicates_pii_and_heavy_users(bench_log, tmp_path, scanner, classifier, monkeypatch):
    monkeypatch.setattr(ds, "ROWS_PER_SHARD", 300)
    monkeypatch.setattr(ds, "PAIRS_AT_ONCE", 7)
    settings = BuildSettings(sources=[f"parquet:{bench_log}"], pii_mode="drop")
    streamed, in_memory = _both_builds(settings, tmp_path, scanner, classifier, chunk_rows=500, batch_rows=700)
    assert [p for p in streamed if streamed[p] != in_memory[p]] == []
    # the comparisons, made 7 rankings at a time, are those of the written rankings made all at once, in their order
    compared = 0
    for split in ("train", "validation", "test"):
        read = lambda config: pl.concat([pl.read_parquet(f) for f in sorted((tmp_path / "streamed" / "rm" / config).glob(f"{split}-*"))])  # noqa: E731
        pairs = read("data")
        assert pairs.equals(ds.pairs_table(read("rankings").with_columns(pl.lit(split).alias("split"))).select(pairs.columns))
        compared += pairs.height
    assert compared > 100
    report = json.loads(streamed[Path("build_report.json")])
    dropped = {s["name"]: s["dropped"] for s in report["stages"]}
    assert dropped["dedup"] and dropped["cap_per_user"] and dropped["pii"]  # every kind of drop crossed the chunks


def test_labels_may_come_before_their_prompt(tmp_path, scanner, classifier):
    log = write_jsonl(tmp_path / "log.jsonl", [
        {"prompt_id": "a", "labeler_id": "l1", "completion": "Paris."},
        {"prompt_id": "a", "user_id": "u1", "source": "labeler", "text": "What is the capital of France?"},
        {"prompt_id": "a", "labeler_id": "l2", "completion": "It is Paris."},
    ])
    build(BuildSettings(sources=[f"jsonl:{log}"], out=str(tmp_path / "out"), allow_empty=True), classifier=classifier,
          scanner=scanner, progress=False)
    sft = pl.concat([pl.read_parquet(f) for f in (tmp_path / "out" / "sft").rglob("*.parquet")])
    # ids follow the file's order of the labels, as in the in-memory build
    assert sorted(zip(sft["demonstration_id"], sft["completion"].list.first().struct.field("content"))) == [
        ("a:d0", "Paris."), ("a:d1", "It is Paris.")]


def test_a_label_for_no_prompt_names_its_line(tmp_path, scanner, classifier):
    log = write_jsonl(tmp_path / "log.jsonl", [
        {"prompt_id": "a", "user_id": "u1", "source": "labeler", "text": "What is the capital of France?"},
        {"prompt_id": "b", "labeler_id": "l1", "completion": "Paris."},
    ])
    with pytest.raises(InputError) as err:
        build(BuildSettings(sources=[f"jsonl:{log}"], out=str(tmp_path / "out")), classifier=classifier, scanner=scanner, progress=False)
    assert f"{log}:2" in str(err.value) and "prompt_id" in str(err.value)
    assert not (tmp_path / "out" / "sft").exists()


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_a_repeated_prompt_id_in_another_chunk_names_both_lines(on_error, tmp_path, scanner, classifier):
    rows = [{"prompt_id": f"p{i}", "user_id": f"u{i % 3}", "source": "api", "text": f"Write a poem about the number {i}."}
            for i in range(9)]
    rows.append({"prompt_id": "p1", "user_id": "u9", "source": "api", "text": "A different prompt reusing an id."})
    log = write_jsonl(tmp_path / "log.jsonl", rows)
    settings = BuildSettings(sources=[f"jsonl:{log}"], out=str(tmp_path / "out"), on_error=on_error, allow_empty=True)
    if on_error == "fail":
        with pytest.raises(InputError) as err:
            build(settings, classifier=classifier, scanner=scanner, progress=False, chunk_rows=4)
        assert str(err.value).startswith(f"{log}:10: field 'prompt_id'") and f"first at {log}:2" in str(err.value)
        return
    report = build(settings, classifier=classifier, scanner=scanner, progress=False, chunk_rows=4)
    dropped = json.loads((tmp_path / "out" / "build_report.json").read_text(encoding="utf-8"))["dropped_records"]
    # skipped: counted under one reason, no raw id or path in it; the record id says where (--on-error fail names both lines)
    assert [(d["record_id"], d["stage"], d["reason"]) for d in dropped if "duplicate prompt_id" in d["reason"]] == [
        (f"{log}:10", "validate", "invalid: field 'prompt_id': duplicate prompt_id")]
    assert sum(report["datasets"]["ppo"]["default"].values()) == 9


def _write_whole(df: pl.DataFrame, schema, folder: Path) -> dict[str, dict]:
    """The reference layout: data/<split>-0000i-of-0000N.parquet per non-empty split, in `df`'s row order."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    for split in ("train", "validation", "test"):
        part = df.filter(pl.col("split") == split)
        if part.height == 0:
            continue
        n = -(-part.height // ds.ROWS_PER_SHARD)
        size = sum(ds._write_shard(part.slice(i * ds.ROWS_PER_SHARD, ds.ROWS_PER_SHARD), schema, ds._shard_path(folder, split, i, n))
                   for i in range(n))
        info[split] = {"num_examples": part.height, "num_bytes": size}
    return info


@pytest.mark.parametrize("key", ["prompt_id", ["prompt_id", "_n"]])
def test_sorted_shards_from_parts_in_any_order_are_the_whole_tables_files(tmp_path, monkeypatch, key):
    monkeypatch.setattr(ds, "ROWS_PER_SHARD", 4)
    # one key column (PPO: prompt ids), or two (a ranking's comparisons share its prompt id; `_n`, not written,
    # orders them, in reverse of the rows' order here, so a file that kept arrival order would differ)
    ids = [f"p{i:03d}" for i in range(23)] if key == "prompt_id" else [f"p{i // 3:03d}" for i in range(23)]
    rows = pl.DataFrame({"prompt_id": ids, "_n": [2 - i % 3 for i in range(23)], "user": [f"u{i}" for i in range(23)],
                         "split": ["train"] * 15 + ["validation"] * 5 + ["test"] * 3}).with_columns(
        pl.lit("api").alias("source"), pl.lit(None, pl.String).alias("prompt_type"), pl.lit("Generation").alias("category"),
        pl.concat_list(pl.struct(pl.lit("user").alias("role"), pl.col("prompt_id").alias("content"))).alias("prompt"))
    whole = _write_whole(rows.sort(key), PPO_SCHEMA, tmp_path / "whole")
    order = list(range(rows.height))
    random.Random(0).shuffle(order)
    shards = ds.SortedShards(tmp_path / "parts", PPO_SCHEMA, tmp_path / "spill", key)
    for i in range(0, len(order), 5):
        shards.add(rows[order[i:i + 5]])
    assert shards.finish() == whole
    assert _files(tmp_path / "parts") == _files(tmp_path / "whole") and len(_files(tmp_path / "whole")) == 4 + 2 + 1


def test_the_report_is_written_a_row_at_a_time_in_json_dumps_layout(tmp_path):
    report = {"a": 1, "nested": {"b": [1, 2], "ü": "x"}}
    dropped = pl.DataFrame({"record_id": ["p1", "p\n2"], "kind": ["prompt"] * 2, "stage": ["dedup"] * 2, "reason": ["r", "s"]})
    for rows in (dropped, dropped.clear()):
        write_report(report, rows.iter_rows(named=True), tmp_path / "r.json")
        expected = json.dumps(report | {"dropped_records": rows.to_dicts()}, indent=2, ensure_ascii=False) + "\n"
        assert (tmp_path / "r.json").read_text(encoding="utf-8") == expected


ALLOCATE_AND_FREE = """
import os
{setup}
import builders, polars as pl, numpy as np

def rss_mb():
    return next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))

base = rss_mb()
frames = [pl.DataFrame({{"s": pl.Series(np.arange(i, 10_000_000 + i)).cast(pl.String)}}) for i in range(2)]
peak = rss_mb()
del frames
print(os.environ["_RJEM_MALLOC_CONF"], base, peak, rss_mb())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads a process's resident memory from /proc")
@pytest.mark.parametrize("user_conf", [None, "dirty_decay_ms:5000"])
def test_polars_hands_a_freed_frame_back_to_the_system_unless_the_user_set_its_allocator(user_conf):
    """A build's driver allocates little while PII runs: pages polars kept after dedup would stay resident through
    the pass where a whole build peaks. Importing builders sets polars' allocator to return them at once; a setting
    of the user's own is left alone (and then the pages are kept)."""
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    setup = "" if user_conf is None else f"os.environ['_RJEM_MALLOC_CONF'] = {user_conf!r}"
    out = subprocess.run([sys.executable, "-c", ALLOCATE_AND_FREE.format(setup=setup)], env=env, capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
    conf, (base, peak, after) = out[0], map(int, out[1:])
    assert peak - base > 300, out  # the frames were really allocated
    if user_conf is None:
        assert conf.endswith(",dirty_decay_ms:0,muzzy_decay_ms:0"), out  # polars puts its defaults first
        assert after - base < (peak - base) / 4, out
    else:
        assert conf.endswith("," + user_conf), out
        assert after - base > (peak - base) / 2, out
