"""The one executor of the build (datatrove's split: `builders.pipeline` declares the stages, this runs them).
Two passes over the input; what stays in memory is a few narrow columns a record, whatever the size of the log; a
small input is the same run with one chunk and one batch.

Pass 1 reads the sources and validates every prompt, a chunk at a time: each chunk's rows are written to disk
with their dedup sketches (prefix digest and LSH band keys, computed on the engine), and only the columns the
decisions need stay in memory (row, id, user, time, chat context). Then it reads the sources again for
the demonstrations and rankings, which go to disk the same way; their ids and prompt ids stay. The stages that
decide on those columns (`per_batch=False`: dedup, the per-user cap, the split) run on all of them at once;
dedup reads the band keys back one band at a time and recomputes signatures only for candidate pairs.
Pass 2 reads the spilled rows back a batch at a time with their labels, keeps the prompts the stages kept, runs the
stages that read text (`per_batch=True`: PII removal, classification) on each batch, and hands the batch to the
writers (`Outputs`), which spill its dataset rows and later sort them into the same files whatever the chunk and
batch sizes (tested byte for byte). Every stage's dropped records, the validated ids and the ids written go to the
build's `Ledger` on disk as they come; the report keeps counts, and its dropped-record list and accounting check
are computed from the ledger's files.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from builders import interrupts
from builders.memory import release_memory
from builders.pseudonym import load_key
from builders.schema import DEMONSTRATIONS_SCHEMA, PROMPTS_SCHEMA, RANKINGS_SCHEMA, Tables
from builders.settings import BuildSettings
from builders.sources import load_source
from builders.stages import Context, Stage, StageResult, merge_results
from builders.stages.dedup import normalised_prefix, signatures_on, sketch_all
from builders.stages.pii import PiiScanner, scanner_for
from builders.stages.validate import Validator
from builders.writers.datasets import Outputs, write_outputs
from builders.writers.ledger import Ledger

log = logging.getLogger(__name__)


class SpilledSketches:
    """Pass 1's spill: each chunk of validated prompts on disk with its dedup sketches, and dedup's view of them
    (`exact`, `band_keys`, `signatures` by `_row`, as `builders.stages.dedup.PrefixSketches` offers in memory)."""

    # what the deciding stages read; users and chat contexts as categoricals (4 bytes a prompt and each distinct
    # value once, where strings took 16 bytes or more a prompt)
    KEEP = ("_row", "prompt_id", pl.col("user").cast(pl.Categorical), "created_at", pl.col("context_key").cast(pl.Categorical))

    def __init__(self, folder: Path, engine, *, prefix_chars: int, bands: int, k: int, num_perm: int):
        self.folder, self.engine, self.prefix_chars, self.bands, self.k, self.num_perm = folder, engine, prefix_chars, bands, k, num_perm
        self.prompt_files: list[Path] = []
        self.sketch_files: list[Path] = []

    def _prefixes(self, frame: pl.DataFrame) -> list[str]:
        return frame.select(normalised_prefix(pl.col("text"), self.prefix_chars))["text"].to_list()

    def add(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Spill a chunk of validated prompts (rows in `_row` order) and its sketches; return the columns kept."""
        if frame.height:
            i = len(self.prompt_files)
            self.prompt_files.append(self.folder / f"prompts-{i:06d}.parquet")
            frame.write_parquet(self.prompt_files[-1], compression="lz4")
            digests, keys = sketch_all(self._prefixes(frame), self.engine, bands=self.bands, k=self.k, num_perm=self.num_perm)
            self.sketch_files.append(self.folder / f"sketches-{i:06d}.parquet")
            pl.DataFrame([frame["_row"], pl.Series("e0", digests[:, 0]), pl.Series("e1", digests[:, 1])]
                         + [pl.Series(f"b{b}", keys[:, b]) for b in range(self.bands)]).write_parquet(self.sketch_files[-1], compression="lz4")
        return frame.select(self.KEEP)

    def _column(self, name: str) -> np.ndarray:
        """One sketch column of every spilled row, indexed by `_row` (rows are spilled in `_row` order)."""
        if not self.sketch_files:
            return np.zeros(0, dtype=np.uint64)
        return np.concatenate([pl.read_parquet(f, columns=[name])[name].to_numpy() for f in self.sketch_files])

    def exact(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), 2), dtype=np.uint64)
        for j, name in enumerate(("e0", "e1")):
            out[:, j] = self._column(name)[rows]
        return out

    def band_keys(self, rows: np.ndarray, band: int) -> np.ndarray:
        return self._column(f"b{band}")[rows]

    def _rows(self, rows, columns: list[str]) -> pl.DataFrame:
        """The spilled `columns` of the given rows, read file by file."""
        wanted = pl.Series("_row", rows, dtype=pl.UInt32).implode()
        return pl.concat([pl.read_parquet(f, columns=["_row", *columns]).filter(pl.col("_row").is_in(wanted)) for f in self.prompt_files])

    def signatures(self, rows: np.ndarray, *, at_once: int = 100_000) -> np.ndarray:
        """Signatures of the given rows (in their order), recomputed from the spilled text about `at_once` prompts
        at a time into one array: the texts, prefixes and signature parts of every candidate were held at once.
        Each file's wanted rows become their prefixes at once: a filtered string column still points into the
        whole file's text buffers (polars' string views), and holding those took ~2 KB a candidate."""
        out = np.empty((len(rows), self.num_perm), dtype=np.uint32)
        where = pl.DataFrame({"_row": pl.Series(rows, dtype=pl.UInt32), "_at": np.arange(len(rows), dtype=np.int64)})
        wanted, pending, held = where["_row"].implode(), [], 0

        def fill():
            prefixes = pl.concat(pending)
            pending.clear()
            out[prefixes["_at"].to_numpy()] = signatures_on(self.engine, prefixes["text"].to_list(), k=self.k, num_perm=self.num_perm)

        for f in self.prompt_files if len(rows) else ():
            texts = pl.read_parquet(f, columns=["_row", "text"]).filter(pl.col("_row").is_in(wanted)).join(where, on="_row")
            pending.append(texts.select("_at", normalised_prefix(pl.col("text"), self.prefix_chars)))
            del texts
            held += pending[-1].height
            if held >= at_once:
                fill()
                held = 0
        if pending:
            fill()
        return out

    def origins(self, rows: list[int]) -> dict[int, str]:
        return dict(self._rows(rows, ["origin"]).iter_rows())

    def batches(self, plan: pl.DataFrame, batch_rows: int):
        """The spilled prompts `plan` (`_row`, `split`) keeps, with their split, in frames of about `batch_rows`;
        each file is deleted once read."""
        pending, rows, done = [], 0, False
        for path in self.prompt_files:
            kept = pl.read_parquet(path).join(plan, on="_row", how="inner").drop("_row").with_columns(pl.col("split").cast(pl.String))
            path.unlink()
            pending.append(kept)
            rows += kept.height
            if rows >= batch_rows:
                yield pl.concat(pending)
                pending, rows, done = [], 0, True
        if pending or not done:  # the last batch; one empty batch if there was nothing at all
            yield pl.concat(pending) if pending else pl.DataFrame(schema={**PROMPTS_SCHEMA, "split": pl.String})


class SpilledLabels:
    """Pass 1's demonstrations and rankings on disk, a chunk at a time (their texts are most of a log's labels:
    3 GB of completions at 10M prompts), with only their ids and prompt ids kept in memory: what the stages that
    decide need. `rows(kind, ids)` reads back the full rows of some of them, in validation order."""

    ID = {"demonstration": "demonstration_id", "ranking": "ranking_id"}
    SCHEMA = {"demonstration": DEMONSTRATIONS_SCHEMA, "ranking": RANKINGS_SCHEMA}

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, list[Path]] = {kind: [] for kind in self.ID}

    def sink(self, kind: str):
        def add(frame: pl.DataFrame) -> pl.DataFrame:
            if frame.height:
                self.files[kind].append(self.folder / f"{kind}s-{len(self.files[kind]):06d}.parquet")
                frame.write_parquet(self.files[kind][-1], compression="lz4")
            return frame.select(self.ID[kind], "prompt_id")
        return add

    def rows(self, kind: str, ids: pl.Series) -> pl.DataFrame:
        """The spilled rows of `kind` whose id is in `ids`, in validation order; a file is read whole only when it
        holds one of them (its ids are read first)."""
        wanted, found = ids.implode(), [pl.DataFrame(schema=self.SCHEMA[kind])]
        for f in self.files[kind] if ids.len() else ():
            if pl.read_parquet(f, columns=[self.ID[kind]])[self.ID[kind]].is_in(wanted).any():
                found.append(pl.read_parquet(f).filter(pl.col(self.ID[kind]).is_in(wanted)))
        return pl.concat(found)


def context_for(stage: Stage, ctx: Context) -> Context:
    """The context `stage` runs in: the executor's engine, or this process where the stage must not run in forked
    workers (a torch model)."""
    from builders.engine import IN_PROCESS, LocalEngine

    if stage.in_process(ctx) and isinstance(ctx.engine, LocalEngine):
        return Context(ctx.settings, IN_PROCESS, ctx.classifier, ctx.scanner, ctx.sketches)
    return ctx


def execute(settings: BuildSettings, out: Path, stages: tuple[Stage, ...], *, classifier, scanner: PiiScanner | None = None,
            engine=None, progress: bool = True, chunk_rows: int = 100_000, batch_rows: int = 250_000, on_stage=None) -> dict:
    """Run `stages` over the sources and write sft/, rm/, ppo/ and build_report.json into `out` (an empty folder);
    returns the report.

    chunk_rows: validated prompts a spill file holds; batch_rows: kept prompts a per-batch stage reads at once.
    Neither changes the output. `on_stage(name, result, seconds)` is called after each stage; the result's dropped
    records are in the build's ledger by then (`result.drop_counts()` counts them; build_report.json lists them,
    and `result.dropped` is empty). The engine (the one
    given, else the one `settings` names) is chosen here, never by a stage."""
    from builders.engine import make_engine

    seconds: dict[str, float] = {}
    spill = out / ".spill"
    spill.mkdir(parents=True)
    own_engine = engine is None

    def stage_done(name, result, t0):
        release_memory()
        seconds[name] = time.perf_counter() - t0
        log.info("%-14s %7d → %7d prompts (%.1fs)", name, result.counts_in.get("prompts", 0), result.counts_out.get("prompts", 0), seconds[name])
        if on_stage is not None:
            on_stage(name, result, seconds[name])

    try:
        if own_engine:  # inside the try: an interrupt while the workers start still stops them
            engine = make_engine(settings.engine, workers=settings.workers, address=settings.ray_address, progress=progress)
            if hasattr(engine, "start"):
                engine.start()
        # pass 1: validate, spill the prompts, keep the decision columns
        t0 = time.perf_counter()
        sources = [load_source(spec, on_error=settings.on_error) for spec in settings.sources]
        spilled = SpilledSketches(spill, engine, prefix_chars=settings.dedup_prefix_chars, bands=settings.dedup_bands,
                                  k=settings.dedup_shingle_words, num_perm=settings.dedup_num_perm)
        labels = SpilledLabels(spill)
        ledger = Ledger(out / ".ledger")
        v = Validator(key=load_key(), on_error=settings.on_error, max_chars=settings.max_prompt_chars, chunk_rows=chunk_rows,
                      prompt_sink=spilled.add, origin_of=spilled.origins, label_sink=labels.sink, label_keys=str(spill / "label-keys.sqlite"))
        with tqdm(desc="read + validate prompts", unit=" records", disable=not progress, mininterval=2) as bar:
            spilled_files = 0
            for source in sources:  # prompts first, so every label can be checked against every prompt id
                for n in v.read_prompts(source):
                    if len(spilled.prompt_files) > spilled_files:  # a chunk went to disk: its memory is free
                        spilled_files = len(spilled.prompt_files)
                        release_memory()
                    bar.update(n)
        # the second read: every record of the files that may hold labels (files found holding prompts only are skipped)
        with tqdm(desc="read + validate labels", unit=" records", disable=not progress, mininterval=2) as bar:
            for source in sources:
                v.read_labels(source, on_read=bar.update)
        tables, result = v.finish()
        del v
        for kind, ids in (("prompt", tables.prompts["prompt_id"]), ("demonstration", tables.demonstrations["demonstration_id"]),
                          ("ranking", tables.rankings["ranking_id"])):
            ledger.ids(f"validated-{kind}", ids)
        result.spill_dropped(ledger)
        results = [result]
        stage_done("validate", result, t0)
        ctx = Context(settings, engine, classifier, scanner_for(settings.pii_names, scanner, progress), spilled)

        # the decisions, on the narrow columns of every prompt
        for stage in (s for s in stages if not s.per_batch):
            t0 = time.perf_counter()
            tables, result = stage.run(tables, context_for(stage, ctx))
            result.spill_dropped(ledger)
            results.append(result)
            stage_done(stage.name, result, t0)
        plan = tables.prompts.select("_row", pl.col("split").cast(pl.Categorical))
        demos, rankings = tables.demonstrations, tables.rankings
        del tables

        # pass 2: the stages that read text, on the kept rows a batch at a time; each batch's dataset rows go to disk
        per_batch = [s for s in stages if s.per_batch]
        parts: dict[str, list[StageResult]] = {s.name: [] for s in per_batch}
        spent = dict.fromkeys(parts, 0.0)
        outputs = Outputs(out, settings.ppo_sources, ledger)

        def run_batch(prompts: pl.DataFrame) -> None:
            nonlocal demos, rankings
            prompts = prompts.sort("prompt_id")
            ids = prompts["prompt_id"].implode()
            # the batch's labels, read back from the spill; a prompt is in one batch only, so they leave the pending ids
            batch = Tables(prompts, labels.rows("demonstration", demos.filter(pl.col("prompt_id").is_in(ids))["demonstration_id"]),
                           labels.rows("ranking", rankings.filter(pl.col("prompt_id").is_in(ids))["ranking_id"]))
            demos, rankings = demos.filter(~pl.col("prompt_id").is_in(ids)), rankings.filter(~pl.col("prompt_id").is_in(ids))
            for stage in per_batch:
                t = time.perf_counter()
                batch, r = stage.run(batch, context_for(stage, ctx))
                r.spill_dropped(ledger)
                parts[stage.name].append(r)
                spent[stage.name] += time.perf_counter() - t
            outputs.add(batch)
            release_memory()

        with tqdm(total=plan.height, desc=" + ".join(s.name for s in per_batch) or "write", unit=" prompts",
                  disable=not progress, mininterval=2) as bar:
            for batch in spilled.batches(plan, batch_rows):
                interrupts.check()
                run_batch(batch)
                bar.update(batch.height)
            del batch  # the last batch's rows and texts (up to ~0.3 GB) would otherwise stay through the write stage
        if demos.height or rankings.height:  # every label's prompt was kept or its drop accounted for before pass 2
            raise RuntimeError(f"{demos.height} demonstrations and {rankings.height} rankings point at no kept prompt")
        for stage in per_batch:
            result = merge_results(parts[stage.name], stage.merge_notes([r.notes for r in parts[stage.name]]))
            seconds[stage.name] = spent[stage.name]
            results.append(result)
            if on_stage is not None:
                on_stage(stage.name, result, spent[stage.name])
    except BaseException:
        shutil.rmtree(out / ".ledger", ignore_errors=True)  # the write stage removes it on every other path
        raise
    finally:
        if own_engine and engine is not None:
            engine.close()
        shutil.rmtree(spill, ignore_errors=True)

    t0 = time.perf_counter()
    try:
        report = write_outputs(out, settings, outputs=outputs, ledger=ledger, stages=results, sources=sources,
                               classifier=classifier, seconds=seconds)
    finally:
        shutil.rmtree(ledger.folder, ignore_errors=True)
    seconds["write"] = time.perf_counter() - t0
    report["seconds"]["write"] = round(seconds["write"], 2)
    return report
