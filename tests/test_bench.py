"""The benchmark log generator: deterministic, built from real text, with truth that the pipeline can be
scored against (injected duplicates are caught, injected personal data does not survive)."""

from __future__ import annotations

import json
import os

import polars as pl
import pytest

from tests.conftest import FULL_DATA

from builders.bench.generate import GenSettings, generate, prefix_jaccard
from instructkit.cli import main
from builders.pipeline import build
from builders.settings import BuildSettings


@pytest.fixture(scope="module")
def log(bench_log):
    return bench_log


def test_generation_is_deterministic_and_truth_is_consistent(log, shared, tmp_path):
    again = tmp_path / "again"
    generate(GenSettings(n=4000, seed=3), shared, again)
    for name in ("prompts.parquet", "demonstrations.parquet", "rankings.parquet", "truth/truth.parquet"):
        assert (log / name).read_bytes() == (again / name).read_bytes(), name
    prompts = pl.read_parquet(log / "prompts.parquet")
    truth = pl.read_parquet(log / "truth" / "truth.parquet")
    assert prompts.height == truth.height == 4000
    text = dict(zip(prompts["prompt_id"], prompts["text"]))
    dups = truth.filter(pl.col("dup_of").is_not_null())
    assert 0.08 < dups.height / 4000 < 0.22
    for row in dups.head(200).iter_rows(named=True):
        assert prefix_jaccard(text[row["dup_of"]], text[row["prompt_id"]]) == pytest.approx(row["prefix_jaccard"], abs=1e-4)
    pii = truth.filter(pl.col("pii_value").is_not_null())
    assert pii.height > 100 and all(v in text[p] for p, v in zip(pii["prompt_id"], pii["pii_value"]))
    assert prompts.group_by("user_id").len()["len"].max() > 200  # Zipf users: the cap has work to do


def test_pipeline_catches_injected_duplicates_and_personal_data(log, scanner, classifier, tmp_path):
    truth = pl.read_parquet(log / "truth" / "truth.parquet")
    build(BuildSettings(sources=[f"parquet:{log}"], out=str(tmp_path / "out")), classifier=classifier, scanner=scanner, progress=False)
    dropped = pl.DataFrame(json.loads((tmp_path / "out" / "build_report.json").read_text(encoding="utf-8"))["dropped_records"])
    deduped = set(dropped.filter(pl.col("stage") == "dedup")["record_id"])
    real = truth.filter(pl.col("prefix_jaccard") >= 0.8)["prompt_id"].to_list()
    assert sum(p in deduped for p in real) / len(real) >= 0.97
    # rows not injected as duplicates are rarely dropped: the few are near-duplicates already in the real text
    # (HH-RLHF's "I like to host guests ... recipes" template, the sample's "Write a short story ..." prompts)
    distinct = set(truth.filter(pl.col("dup_of").is_null())["prompt_id"])
    if FULL_DATA:  # from the small excerpts the generator splices the same few texts again and again
        assert len(deduped & distinct) / len(distinct) < 0.02
    # every text the build published; the injected values of the prompts it kept must not be in them
    published = "\n".join(json.dumps(row, ensure_ascii=False) for f in sorted((tmp_path / "out").rglob("*.parquet"))
                           for row in pl.read_parquet(f).to_dicts())
    kept = set(truth["prompt_id"]) - set(dropped.filter(pl.col("kind") == "prompt")["record_id"])
    injected = truth.filter(pl.col("pii_value").is_not_null() & pl.col("prompt_id").is_in(list(kept)))
    leaks = [v for v in injected["pii_value"] if json.dumps(v, ensure_ascii=False)[1:-1] in published]
    assert injected.height > 50 and len(leaks) / injected.height <= 0.03, leaks[:10]


def test_a_missing_data_dir_is_an_error_not_a_silent_fallback(tmp_path, capsys):
    assert main(["bench", "generate", "--n", "10", "--out", str(tmp_path / "log"), "--data-dir", str(tmp_path / "nope")]) == 2
    assert "data-dir" in capsys.readouterr().err and not (tmp_path / "log").exists()


def test_bench_run_measures_the_build_and_both_anchors_on_one_log(shared, tmp_path):
    from builders.bench.run import markdown, run_size

    res = run_size(3000, seed=1, work=tmp_path, data_dir=shared, workers=1, pii_sample=60, anchor_dedup_limit=10**9)
    assert [s["stage"] for s in res["stages"]] == ["validate", "dedup", "cap_per_user", "split_by_user", "pii", "classify", "write"]
    assert res["stages"][0]["rows_in"] == 3000 and res["peak_rss_mb"] > 0 and sum(res["datasets"]["ppo"]["default"].values()) > 0
    d, p = res["dedup"], res["pii"]
    assert d["injected_at_or_above_threshold"] > 100 and d["ours"]["recall"] >= 0.95 and d["anchor"]["rows"] == 3000
    assert p["speed_texts"] == 60 and p["ours"]["texts_per_s_one_process"] > p["anchor"]["texts_per_s_one_process"] > 0
    assert "injected" not in p["ours"]  # leaks are measured on data this project did not write (bench pii), not here
    v = res["validate_one_core"]
    assert v["prompts"] == 3000 and v["records"] > 3000 and v["prompts_per_s"] > 0 and v["records_per_s"] > 0
    j = res["validate_one_core_jsonl"]  # the same log as JSONL: the same records
    assert (j["prompts"], j["records"]) == (v["prompts"], v["records"]) and j["records_per_s"] > 0
    text = markdown([res], "instructkit bench run --sizes 3000")
    assert "records at **" in text and "one worker held at most" in text and "(JSONL)" in text
    assert "| 3,000 | " in text and "| ours (dedup stage alone) | 3,000 |" in text and "instructkit bench run --sizes 3000" in text
    assert not (tmp_path / "out-3000").exists()  # the built folders are removed after measuring


def test_memory_bench_runs_every_stage_but_the_text_models(bench_log, capsys):
    from builders.bench.memory import main

    main(["--log", str(bench_log), "--workers", "1"])
    table = capsys.readouterr().out
    stages = [line.split(" | ")[0].strip("| ") for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert stages == ["validate", "dedup", "cap_per_user", "split_by_user", "classify", "write"]
    assert "peak" in table.splitlines()[-1]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="thread affinity is Linux-only")
def test_the_one_core_measurement_pins_every_thread_of_the_process():
    """polars' and Arrow's thread pools start at import: pinning the calling thread alone left them on the other cores
    and the "one core" rate was 30-40% off."""
    import threading

    from builders.bench.run import _pin_threads

    pl.select(pl.int_range(100_000).sum())  # its pool is up
    started = threading.Event()
    stop = threading.Event()
    worker = threading.Thread(target=lambda: started.set() or stop.wait(5))
    worker.start()
    started.wait(5)
    def affinities() -> list[set[int]]:  # of the threads alive now (the test session's own threads come and go)
        found = []
        for tid in os.listdir("/proc/self/task"):
            try:
                found.append(os.sched_getaffinity(int(tid)))
            except ProcessLookupError:
                pass
        return found

    cpus = os.sched_getaffinity(0)
    try:
        _pin_threads({min(cpus)})
        pinned = affinities()
        assert len(pinned) > 2 and all(a == {min(cpus)} for a in pinned)
    finally:
        _pin_threads(cpus)
        stop.set()
        worker.join()
    assert all(a == cpus for a in affinities())


def test_the_targets_row_of_a_build_only_size_judges_1m_by_its_time_and_10m_by_its_peak():
    """A 1M build-only run of 418 s was marked "met: 1.00×" (its peak against its own) though 1M's target is 5 minutes."""
    from builders.bench.run import markdown

    def build_only(n, wall_s, peak):
        stage = {"stage": "validate", "rows_in": n, "rows_out": n, "seconds": 1.0, "peak_rss_mb": peak}
        return {"n": n, "seed": 0, "wall_s": wall_s, "peak_rss_mb": peak, "worker_peak_mb": 500, "workers": 2, "stages": [stage]}

    def targets(results):
        return [line for line in markdown(results, "instructkit bench run").splitlines() if line.startswith("| 1")]

    slow, fast, big, too_big = build_only(1_000_000, 418.0, 2432), build_only(1_000_000, 290.0, 2432), build_only(10_000_000, 7000.0, 2600), build_only(10_000_000, 7000.0, 3000)
    assert targets([slow])[0].endswith("| **missed**: 418 s, 2,432 MB |")
    assert targets([fast])[0].endswith("| met: 290 s, 2,432 MB |")
    assert targets([slow, big])[1].endswith("| met: 1.07× 1M's peak; 7,000 s, peak 2,600 MB |")
    assert targets([slow, too_big])[1].endswith("| **missed**: 1.23× 1M's peak; 7,000 s, peak 3,000 MB |")
