"""`instructkit bench run`: per-stage throughput, wall time and peak memory of the pipeline on generated logs, with
the two anchors (a datasketch per-prompt MinHash loop; presidio's default analyzer) measured on the same input,
and the recall of the injected duplicates and personal data for ours and for the anchors."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl

from builders.bench.generate import GenSettings, generate
from builders.settings import BuildSettings



class PeakRss:
    """Samples the memory of this process and its children (worker processes) every `every` seconds.

    Proportional set size where the OS reports it (Linux): forked workers share the parent's pages, and summing
    their resident sizes would count those pages once per worker."""

    def __init__(self, every: float = 0.2):
        import psutil

        self.proc, self.every, self.peak, self._stop = psutil.Process(), every, 0, threading.Event()
        self.window_peak = 0
        self.worker_peak = 0  # the most any one worker process held
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _mem(proc) -> int:
        try:  # smaps_rollup: the kernel sums PSS itself, far cheaper than reading every mapping
            with open(f"/proc/{proc.pid}/smaps_rollup") as fh:
                return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration):  # not Linux: resident size
            return proc.memory_info().rss

    def _rss(self) -> int:
        total = self._mem(self.proc)
        for child in self.proc.children(recursive=True):
            try:
                mem = self._mem(child)
            except Exception:  # a worker that just exited
                continue
            total += mem
            self.worker_peak = max(self.worker_peak, mem)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._rss()
            self.peak, self.window_peak = max(self.peak, rss), max(self.window_peak, rss)
            time.sleep(self.every)

    def start(self) -> "PeakRss":
        self.thread.start()
        return self

    def take_window(self) -> int:
        """Peak since the last call (one stage), then start a new window."""
        peak, self.window_peak = max(self.window_peak, self._rss()), 0
        return peak

    def stop(self) -> int:
        self._stop.set()
        self.thread.join()
        return self.peak


def _prefixes(texts: list[str], chars: int) -> list[str]:
    from builders.stages.dedup import normalised_prefix

    return pl.Series(texts, dtype=pl.String).to_frame("t").select(normalised_prefix(pl.col("t"), chars))["t"].to_list()


def anchor_dedup(prompts: pl.DataFrame, s: BuildSettings) -> tuple[set[str], float]:
    """The usual hand-written dedup: one datasketch MinHash per prompt (update loop) and a MinHashLSH index;
    a prompt whose query finds an earlier prompt is a duplicate. Same prefixes and shingles as ours."""
    from datasketch import MinHash, MinHashLSH

    from builders.stages.dedup import shingles

    p = prompts.sort(["created_at", "prompt_id"], nulls_last=True)
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=s.dedup_threshold, num_perm=s.dedup_num_perm)
    dups = set()
    for pid, prefix in zip(p["prompt_id"].to_list(), _prefixes(p["text"].to_list(), s.dedup_prefix_chars)):
        m = MinHash(num_perm=s.dedup_num_perm)
        for sh in shingles(prefix, s.dedup_shingle_words):
            m.update(sh)
        if lsh.query(m):
            dups.add(pid)
        else:
            lsh.insert(pid, m)
    return dups, time.perf_counter() - t0


def presidio_default():
    """presidio's AnalyzerEngine with its default recognizers and spaCy's small English model (the default engine
    downloads en_core_web_lg, which this machine cannot; the small model is the faster of the two)."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from builders.pii.identifiers import offline_tldextract
    from builders.pii.scanner import SPACY_MODEL

    offline_tldextract()
    nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
                                               "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]}).create_engine()
    return AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])


def run_size(n: int, *, seed: int, work: Path, data_dir: Path | None, workers: int | None, pii_sample: int,
             anchor_dedup_limit: int, anchors: bool = True) -> dict:
    """Generate (or reuse) a log of n prompts and build it as `instructkit build` does, with per-stage times and
    peak memory; then, with `anchors`, run the anchors on the same input and score both on the injected truth.
    The anchors hold every prompt in memory, so they are for the sizes they fit (not 10M)."""
    from builders.pipeline import build
    from builders.stages.pii import PiiScanner
    from taxonomy.model import load_model

    log_dir = work / f"log-{n}-seed{seed}"
    t0 = time.perf_counter()
    if not (log_dir / "truth" / "truth.parquet").exists():
        generate(GenSettings(n=n, seed=seed), data_dir, log_dir)
    gen_s = time.perf_counter() - t0

    os.environ.setdefault("INSTRUCTKIT_PSEUDONYM_KEY", "benchmark-key")
    out = work / f"out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    settings = BuildSettings(sources=[f"parquet:{log_dir}"], out=str(out), seed=seed, workers=workers)
    classifier = load_model(settings.classifier)  # loaded before the clock starts, as a long-running service would
    mem = PeakRss().start()
    stages = []

    def on_stage(name, result, seconds):
        stages.append({"stage": name, "rows_in": result.counts_in.get("prompts", 0), "rows_out": result.counts_out.get("prompts", 0),
                       "seconds": round(seconds, 2), "peak_rss_mb": round(mem.take_window() / 2**20)})

    wall0 = time.perf_counter()
    report = build(settings, classifier=classifier, progress=False, on_stage=on_stage)
    wall = time.perf_counter() - wall0
    final = report["stages"][-1]["in"]
    stages.append({"stage": "write", "rows_in": final, "rows_out": final, "seconds": report["seconds"]["write"],
                   "peak_rss_mb": round(mem.take_window() / 2**20)})
    peak = mem.stop()
    result = {"n": n, "seed": seed, "generate_s": round(gen_s, 1), "wall_s": round(wall, 1), "peak_rss_mb": round(peak / 2**20),
              "worker_peak_mb": round(mem.worker_peak / 2**20), "workers": settings.workers or os.cpu_count(), "stages": stages,
              "datasets": report["datasets"], "validate_one_core": _validate_alone(settings.sources),
              "validate_one_core_jsonl": _validate_alone([f"jsonl:{_as_jsonl(log_dir)}"])}
    if not anchors:
        shutil.rmtree(out, ignore_errors=True)
        return result

    # duplicates: injected ones whose prefix really is a duplicate (true Jaccard at or above the threshold)
    dropped = pl.DataFrame(json.loads((out / "build_report.json").read_text(encoding="utf-8"))["dropped_records"])
    shutil.rmtree(out, ignore_errors=True)
    ours_dups = set(dropped.filter((pl.col("stage") == "dedup") & (pl.col("kind") == "prompt"))["record_id"].to_list())
    truth = pl.read_parquet(log_dir / "truth" / "truth.parquet")
    logged = pl.read_parquet(log_dir / "prompts.parquet", columns=["prompt_id", "text", "created_at"])  # every row is valid
    real = truth.filter(pl.col("prefix_jaccard") >= settings.dedup_threshold)
    not_dup = set(truth.filter(pl.col("dup_of").is_null())["prompt_id"].to_list())
    limit_ids = set(logged.sort(["created_at", "prompt_id"]).head(anchor_dedup_limit)["prompt_id"].to_list())
    anchor_input = logged.filter(pl.col("prompt_id").is_in(list(limit_ids)))
    anchor_dups, anchor_s = anchor_dedup(anchor_input, settings)
    # ours on the anchor's input, for a like-for-like recall (duplicates whose original is in the same rows)
    real_in = real.filter(pl.col("prompt_id").is_in(list(limit_ids)) & pl.col("dup_of").is_in(list(limit_ids)))
    # dedup's work is split between pass 1 (MinHash sketches of each chunk, timed with validation) and the dedup
    # stage; its speed is measured by itself, on the engine the build uses, below
    dedup_s = _dedup_seconds(logged, settings)

    def recall(found: set, ids) -> float:
        ids = list(ids)
        return round(sum(i in found for i in ids) / max(len(ids), 1), 4)

    dedup = {
        "injected_duplicates": truth["dup_of"].is_not_null().sum(),
        "injected_at_or_above_threshold": real.height,
        "ours": {"prompts_per_s": round(n / dedup_s), "recall": recall(ours_dups, real["prompt_id"]),
                 "recall_on_anchor_rows": recall(ours_dups, real_in["prompt_id"]),
                 "false_dups": len(ours_dups & not_dup)},
        "anchor": {"rows": anchor_input.height, "prompts_per_s": round(anchor_input.height / anchor_s),
                   "recall_on_anchor_rows": recall(anchor_dups, real_in["prompt_id"]),
                   "false_dups": len(anchor_dups & not_dup)},
    }
    dedup["speedup"] = round(dedup["ours"]["prompts_per_s"] / dedup["anchor"]["prompts_per_s"], 1)

    # personal data: both scanners on the same texts, one process each: a random sample of the log's distinct
    # prompts (its natural mix). Leaks are measured by `instructkit bench pii` on data this project did not write,
    # never on the values this generator injected.
    distinct = logged.filter(pl.col("prompt_id").is_in(list(not_dup)))
    speed_texts = distinct.sample(min(pii_sample, distinct.height), seed=seed)["text"].to_list()
    ours_scanner, anchor = PiiScanner(progress=False), presidio_default()

    def timed(fn, xs):
        t = time.perf_counter()
        out = fn(xs)
        return out, len(xs) / (time.perf_counter() - t)

    ours_scanner.scan_distinct(speed_texts[:20])  # warm-up: lazy loading is not what is measured
    _, ours_rate = timed(ours_scanner.scan_distinct, speed_texts)
    _, anchor_rate = timed(lambda xs: [anchor.analyze(x, language="en") for x in xs], speed_texts)
    pii_stage = next(s for s in stages if s["stage"] == "pii")
    pii_notes = next(s["notes"] for s in report["stages"] if s["name"] == "pii")
    pii = {
        "speed_texts": len(speed_texts),
        "ours": {"texts_per_s_one_process": round(ours_rate),
                 "pipeline_texts_per_s": round(pii_notes["texts_scanned"] / pii_stage["seconds"])},
        "anchor": {"texts_per_s_one_process": round(anchor_rate)},
    }
    pii["speedup_one_process"] = round(pii["ours"]["texts_per_s_one_process"] / pii["anchor"]["texts_per_s_one_process"], 1)
    pii["speedup_pipeline"] = round(pii["ours"]["pipeline_texts_per_s"] / pii["anchor"]["texts_per_s_one_process"], 1)
    return result | {"dedup": dedup, "pii": pii}


def _as_jsonl(log_dir: Path) -> Path:
    """The log's files as JSONL (polars' `sink_ndjson`, streamed), written once beside it: most users' logs are JSONL."""
    out = log_dir.with_name(log_dir.name + "-jsonl")
    if not (out / "done").exists():
        out.mkdir(parents=True, exist_ok=True)
        for file in sorted(log_dir.glob("*.parquet")):
            pl.scan_parquet(file).sink_ndjson(out / f"{file.stem}.jsonl")
        (out / "done").write_text("")
    return out


def _pin_threads(cpus: set[int]) -> None:
    """Every thread of this process (polars' and Arrow's pools too) on `cpus`. `os.sched_setaffinity(0, ...)` moves
    the calling thread alone: the pools started at import stayed on the other cores, and the "one core" rate measured
    that way was 30-40% lower than the same code run under `taskset` (76,000-86,000 against 119,000-129,000
    records/s at 1M). Threads are listed again until a listing shows none not yet pinned (a few rounds at most): one
    started meanwhile by a thread not yet pinned would run elsewhere."""
    pinned: set[str] = set()
    for _ in range(10):
        fresh = set(os.listdir("/proc/self/task")) - pinned
        if not fresh:
            return
        for tid in fresh:
            try:
                os.sched_setaffinity(int(tid), cpus)
            except ProcessLookupError:  # a thread that ended meanwhile
                pass
        pinned |= fresh


def _validate_alone(specs: list[str]) -> dict:
    """Reading and validating the sources in this process alone (one core, no spill, no sketches), as the build's
    pass 1 does it: prompts a batch of columns at a time, then the labels."""
    from builders.pseudonym import load_key
    from builders.sources import load_source
    from builders.stages.validate import Validator

    settings = BuildSettings(sources=specs)
    sources = [load_source(spec) for spec in specs]
    keep = ("_row", "prompt_id", "user", "source", "created_at", "context_key")
    v = Validator(key=load_key(), on_error=settings.on_error, max_chars=settings.max_prompt_chars,
                  prompt_sink=lambda frame: frame.select(keep))
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cpus:
        _pin_threads({min(cpus)})  # one core, every thread of this process on it
    t0 = time.perf_counter()
    for source in sources:
        for _ in v.read_prompts(source):
            pass
    prompts_s = time.perf_counter() - t0
    for source in sources:
        v.read_labels(source)
    _, result = v.finish()
    total_s = time.perf_counter() - t0
    if cpus:
        _pin_threads(cpus)
    records = sum(result.counts_in.values())
    return {"prompts": result.counts_in["prompts"], "records": records, "prompts_per_s": round(result.counts_in["prompts"] / prompts_s),
            "records_per_s": round(records / total_s)}


def _dedup_seconds(logged: pl.DataFrame, settings: BuildSettings) -> float:
    """Our dedup stage alone on the log's prompts (sketches, candidates, clusters), on the build's engine."""
    from builders.engine import make_engine
    from builders.schema import DEMONSTRATIONS_SCHEMA, RANKINGS_SCHEMA, Tables, empty
    from builders.stages.dedup import dedup

    tables = Tables(logged.with_columns(pl.lit("").alias("context_key")), empty(DEMONSTRATIONS_SCHEMA), empty(RANKINGS_SCHEMA))
    engine = make_engine("local", workers=settings.workers, progress=False)
    t = time.perf_counter()
    dedup(tables, prefix_chars=settings.dedup_prefix_chars, shingle_words=settings.dedup_shingle_words, num_perm=settings.dedup_num_perm,
          threshold=settings.dedup_threshold, bands=settings.dedup_bands, engine=engine)
    return time.perf_counter() - t


def _size_section(r: dict, title: str, what: str, note: str) -> list[str]:
    """A size's heading, its whole-run time and peak memory, and its per-stage table."""
    lines = [f"### {r['n']:,} prompts{', ' + title if title else ''} (seed {r['seed']}, {r['workers']} workers)", "",
            f"{what}: **{r['wall_s']:,.0f} s**, peak memory (proportional set size of this process and its workers) "
            f"**{r['peak_rss_mb']:,} MB**, of which one worker held at most **{r.get('worker_peak_mb', 0):,} MB**. {note}", ""]
    if "validate_one_core" in r:
        v = r["validate_one_core"]
        lines += [f"Reading and validating alone, in one process on one core (no spill, no sketches): {v['prompts']:,} prompts "
                  f"at **{v['prompts_per_s']:,} rows/s**; with the labels (read again, checked column-wise a batch at a time), {v['records']:,} "
                  f"records at **{v['records_per_s']:,} rows/s**.", ""]
    if "validate_one_core_jsonl" in r:
        v = r["validate_one_core_jsonl"]
        lines += [f"The same log as JSONL (polars' `sink_ndjson`), read and validated the same way: {v['prompts_per_s']:,} "
                  f"prompts/s, {v['records_per_s']:,} records/s.", ""]
    return lines + [
            "| stage | rows in | rows out | seconds | rows/s | peak MB |", "|---|---:|---:|---:|---:|---:|"] + _stage_rows(r)


def _stage_rows(r: dict) -> list[str]:
    rows = []
    for s in r["stages"]:
        rate = f"{s['rows_in'] / s['seconds']:,.0f}" if s["seconds"] else "-"
        peak = f"{s['peak_rss_mb']:,}" if s["peak_rss_mb"] is not None else "-"
        rows.append(f"| {s['stage']} | {s['rows_in']:,} | {s['rows_out']:,} | {s['seconds']:.1f} | {rate} | {peak} |")
    return rows


def markdown(results: list[dict], command: str) -> str:
    from importlib.metadata import version

    lines = ["## Prompt pipeline (`instructkit bench run`)", "",
             f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
             f"datasketch {version('datasketch')}, "
             f"presidio-analyzer {version('presidio-analyzer')}, spaCy {version('spacy')}.", "",
             "Produced by:", "", "```bash", command, "```", ""]
    lines += ["### Targets", "", "| size | dedup ≥ 10× the loop, recall not lower | PII ≥ 5× presidio's speed on the same texts "
              "(its recall: `instructkit bench pii`, below) | read + validate ≥ 100,000 rows/s on one core | "
              "whole build: 1M ≤ 5 min; 10M peak memory ≤ 1.2× 1M's |", "|---|---|---|---|---|"]
    whole_only = [r for r in results if "dedup" not in r]
    results = [r for r in results if "dedup" in r]
    ok = lambda c: "met" if c else "**missed**"  # noqa: E731
    one_m = next((r for r in results + whole_only if r["n"] == 1_000_000), None)

    def validate_cell(r):
        v, j = r.get("validate_one_core"), r.get("validate_one_core_jsonl")
        if not v:
            return "-"
        if not j:
            return f"{ok(v['records_per_s'] >= 100_000)}: {v['records_per_s']:,} rows/s (Parquet)"
        return (f"{ok(min(v['records_per_s'], j['records_per_s']) >= 100_000)}: {v['records_per_s']:,} rows/s (Parquet), "
                f"{j['records_per_s']:,} (JSONL)")

    def whole_cell(r):
        """1M: its time against 5 minutes; larger: its peak against 1M's (a 1M build-only run was once marked "met:
        1.00×", its peak against itself, whatever its time)."""
        if r["n"] == 1_000_000:
            return f"{ok(r['wall_s'] <= 300)}: {r['wall_s']:,.0f} s, {r['peak_rss_mb']:,} MB"
        if r["n"] > 1_000_000 and one_m:
            ratio = r["peak_rss_mb"] / one_m["peak_rss_mb"]
            return f"{ok(ratio <= 1.2)}: {ratio:.2f}× 1M's peak; {r['wall_s']:,.0f} s, peak {r['peak_rss_mb']:,} MB"
        return f"{r['wall_s']:,.0f} s, peak {r['peak_rss_mb']:,} MB" if "dedup" not in r else "-"

    for r in results:
        d, p = r["dedup"], r["pii"]
        dedup_ok = d["speedup"] >= 10 and d["ours"]["recall_on_anchor_rows"] >= d["anchor"]["recall_on_anchor_rows"]
        pii_ok = p["speedup_one_process"] >= 5
        lines.append(f"| {r['n']:,} | {ok(dedup_ok)}: {d['speedup']}×, recall {d['ours']['recall_on_anchor_rows']:.3f} vs "
                     f"{d['anchor']['recall_on_anchor_rows']:.3f} | {ok(pii_ok)}: {p['speedup_one_process']}× in one process | "
                     f"{validate_cell(r)} | {whole_cell(r)} |")
    for r in whole_only:
        lines.append(f"| {r['n']:,} | (measured at the smaller sizes) | (measured at the smaller sizes) | {validate_cell(r)} | "
                     f"{whole_cell(r)} |")
    lines.append("")
    note = ("validate includes reading the log (twice: prompts, then labels), spilling the rows and dedup's MinHash "
            "sketches of each chunk; pass 2 runs PII and classify batch by batch, so its memory shows under pii. Generating "
            "the log is not counted.")
    for r in whole_only:
        lines += _size_section(r, "the whole build only", "`instructkit build`", note)
        lines.append("")
    for r in results:
        lines += _size_section(r, "", "`instructkit build`", note)
        d, p = r["dedup"], r["pii"]
        lines += ["", f"Dedup: {d['injected_duplicates']:,} injected duplicates, {d['injected_at_or_above_threshold']:,} of them with a "
                  "true prefix Jaccard at or above the threshold (the ones recall counts).", "",
                  "| dedup | rows | prompts/s | recall (anchor's rows) | recall (all rows) | distinct prompts dropped |",
                  "|---|---:|---:|---:|---:|---:|",
                  f"| ours (dedup stage alone) | {r['n']:,} | {d['ours']['prompts_per_s']:,} | {d['ours']['recall_on_anchor_rows']:.4f} | "
                  f"{d['ours']['recall']:.4f} | {d['ours']['false_dups']:,} |",
                  f"| datasketch loop + MinHashLSH | {d['anchor']['rows']:,} | {d['anchor']['prompts_per_s']:,} | "
                  f"{d['anchor']['recall_on_anchor_rows']:.4f} | - | {d['anchor']['false_dups']:,} |",
                  "", f"Dedup speed-up over the anchor: **{d['speedup']}×**.", "",
                  f"PII: both scanners read the same {p['speed_texts']:,} distinct prompts of the log, drawn at random, in one "
                  "process each. The pipeline stage also scans demonstrations and ranked completions, on every worker. Leaks "
                  "and over-redaction are measured on data this project did not write: `instructkit bench pii`.", "",
                  "| PII | texts/s (1 process) | texts/s (pipeline stage) |", "|---|---:|---:|",
                  f"| ours | {p['ours']['texts_per_s_one_process']:,} | {p['ours']['pipeline_texts_per_s']:,} |",
                  f"| presidio default (spaCy sm) | {p['anchor']['texts_per_s_one_process']:,} | - |",
                  "", f"PII speed-up over the anchor: **{p['speedup_one_process']}×** in one process, "
                  f"**{p['speedup_pipeline']}×** as the pipeline stage runs it.", ""]
    return "\n".join(lines)


def run(sizes: list[int], *, build_only: list[int] = (), seed: int, work: Path, data_dir: Path | None, workers: int | None, pii_sample: int,
        anchor_dedup_limit: int, out: Path | None, command: str) -> list[dict]:
    """Each size in a fresh interpreter, so peak memory is that size's alone."""
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for n, whole_only in [(n, False) for n in sizes] + [(n, True) for n in build_only]:
        res_file = work / f"result-{n}{'-build' if whole_only else ''}.json"
        cmd = [sys.executable, "-m", "builders.bench.run", "--one", str(n), "--seed", str(seed), "--work", str(work),
               "--pii-sample", str(pii_sample), "--anchor-dedup-limit", str(anchor_dedup_limit)]
        if whole_only:
            cmd.append("--build-only")
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        if workers:
            cmd += ["--workers", str(workers)]
        print(f"benchmark: {n:,} prompts ...", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        results.append(json.loads(res_file.read_text()))
    text = markdown(results, command)
    print(text)
    if out is not None:
        from builders.bench.doc import write_section

        write_section(out, "run", text)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


def _one(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--one", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--workers", type=int)
    p.add_argument("--pii-sample", type=int, default=2000)
    p.add_argument("--anchor-dedup-limit", type=int, default=10**9)
    p.add_argument("--build-only", action="store_true")
    a = p.parse_args(argv)
    work = Path(a.work)
    res = run_size(a.one, seed=a.seed, work=work, data_dir=Path(a.data_dir) if a.data_dir else None, workers=a.workers,
                   pii_sample=a.pii_sample, anchor_dedup_limit=a.anchor_dedup_limit, anchors=not a.build_only)
    name = f"result-{a.one}{'-build' if a.build_only else ''}.json"
    (work / name).write_text(json.dumps(res, indent=1, default=int) + "\n", encoding="utf-8")


if __name__ == "__main__":
    _one(sys.argv[1:])
