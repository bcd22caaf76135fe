"""Where the per-row work of the stages runs: in this process, in local worker processes, or on Ray Data.

Stages hand the engine a picklable function of a list (`map`: one result per item; `map_batches`: one result per
batch), and, for dedup, tables of LSH band keys to group (`pairs`). Every engine returns exactly what the
in-process run returns, so the choice of engine changes speed, never output.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing as mp
import os
import pickle
import shutil
import signal
import sys
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from builders import interrupts


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


_worker_fns: dict[str, Callable] = {}  # a worker's loaded stage functions, by the digest of their pickle
_WORKER_FNS_KEPT = 4


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group. A worker that died of it mid-task would leave the parent waiting for
    # a result forever (and Pool.terminate waiting on its task thread): workers ignore it, the parent stops them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler turns SIGTERM into an interrupt; here it just ends
    # the build's lock on its --out: a worker that outlives the build (an engine kept for several builds) would hold
    # the folder with its copy. Looked up, not imported: a worker forked by a build has the module already
    pipeline = sys.modules.get("builders.pipeline")
    if pipeline is not None:
        for fd in pipeline.HELD_LOCKS:
            os.close(fd)
        pipeline.HELD_LOCKS.clear()


def _run_chunk(task: tuple[str, str, list]) -> list:
    """One batch on a worker: the stage function is unpickled (its models loaded) the first time this worker meets
    it, from the file the parent wrote, and kept for every later batch and stage run of the build."""
    key, path, items = task
    fn = _worker_fns.get(key)
    if fn is None:
        with open(path, "rb") as fh:
            fn = pickle.load(fh)
        while len(_worker_fns) >= _WORKER_FNS_KEPT:  # a long-lived engine meets many functions; keep the newest
            _worker_fns.pop(next(iter(_worker_fns)))
        _worker_fns[key] = fn
    return fn(items)


def _stop_pool(pool, folder: str) -> None:
    """Stop the workers at once. A worker killed while it waited for work (Ctrl-C or SIGTERM reach the whole process
    group) leaves the queue's lock taken, and multiprocessing.Pool's own teardown waits on that lock forever; the
    process pool executor notices a dead worker, and its workers are killed here before it shuts down."""
    for proc in list((pool._processes or {}).values()):
        if proc.is_alive():
            proc.kill()
    pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(folder, ignore_errors=True)


def candidate_pairs(keys: pl.DataFrame) -> pl.DataFrame:
    """Rows sharing a band key, as (first, i) pairs: every member of a group joined to the group's smallest row.

    `keys` has columns `band`, `ctx`, `h` (the band's hash) and `i` (row). This is the unit of work a distributed
    engine shards by key; the result is the same whatever the partitioning.
    """
    # sorted by key then row, a group's smallest row comes first: no per-group lists (a list for every one of
    # millions of mostly single-row groups was ~200 bytes a row)
    group = ["band", "ctx", "h"]
    ordered = keys.select(*group, pl.col("i").cast(pl.Int64)).sort([*group, "i"])
    starts = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in group).fill_null(True)
    pairs = ordered.select(pl.when(starts).then(pl.col("i")).forward_fill().alias("first"), "i").filter(pl.col("i") != pl.col("first"))
    return pairs.unique().sort(["first", "i"])


class _Engine(ABC):
    """What every engine offers the stages; only `map_batches` and `pairs` differ between engines."""

    def map(self, fn: Callable[[list], list], items: Sequence, *, batch_size: int = 2_000, desc: str = "") -> list:
        """fn applied to batches of `items` (one result per item); results concatenated in input order."""
        return [r for batch in self.map_batches(fn, items, batch_size=batch_size, desc=desc) for r in batch]

    @abstractmethod
    def map_batches(self, fn: Callable[[list], object], items: Sequence, *, batch_size: int = 2_000, desc: str = "") -> list:
        """fn applied to consecutive batches of `items`; one result per batch, in order."""

    @abstractmethod
    def pairs(self, key_frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
        """Candidate (first, i) pairs of rows sharing a band key (see `candidate_pairs`)."""

    def close(self) -> None:
        pass


class LocalEngine(_Engine):
    """In this process, or in `workers` forked processes for inputs of at least `min_parallel` items.

    The worker processes start on `start()` (a build calls it first) or on the first parallel call, and stay until
    `close()`: each loads a stage function's models (spaCy, the classifier) once, the first time it runs a batch of
    that stage, and keeps them for every later batch and call, so a build that runs PII batch after batch loads
    spaCy once per worker."""

    name = "local"

    def __init__(self, workers: int | None = None, min_parallel: int = 20_000, progress: bool = True):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.min_parallel = min_parallel
        self.progress = progress
        self._pool = None
        self._folder: str | None = None  # where the pickled stage functions wait for the workers
        self._finalizer = None

    @property
    def worker_pids(self) -> list[int]:
        """The worker processes' ids (empty before the first parallel call and after `close()`)."""
        return sorted(self._pool._processes) if self._pool is not None else []

    def start(self):
        """Start the worker processes now (they also start on the first parallel call). A build starts them before
        it reads anything: forked then, they share only the modules with the driver, not pages of its growing
        tables that would become theirs as the driver changes them."""
        if self._pool is None and self.workers > 1:
            # fork: workers start in milliseconds and need no importable __main__; they run only stage functions
            # (no polars), so the parent's idle polars threads are of no concern to them
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self._folder = tempfile.mkdtemp(prefix="instructkit-engine-")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker)
            self._finalizer = weakref.finalize(self, _stop_pool, self._pool, self._folder)
            # the executor forks its workers on the first task: now. A Ctrl-C there would reach a worker before it
            # set its own handlers and kill it: the pool would fail broken, not interrupted. Held, the workers start
            # with a handler that only records it (then set their own), and this process is interrupted after
            with interrupts.held():
                first = self._pool.submit(int)
            first.result()
        return self._pool

    def _payload(self, fn: Callable) -> tuple[str, str]:
        """(digest, file) of the pickled function, written once per distinct function."""
        payload = pickle.dumps(fn)
        key = hashlib.blake2b(payload, digest_size=16).hexdigest()
        path = os.path.join(self._folder, key + ".pkl")
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as fh:
                fh.write(payload)
            os.replace(path + ".tmp", path)
        return key, path

    def map_batches(self, fn: Callable[[list], object], items: Sequence, *, batch_size: int = 2_000, desc: str = "") -> list:
        """fn applied to consecutive batches of `items`; one result per batch, in order."""
        n = len(items)
        spans = _chunks(n, batch_size)
        bar = tqdm(total=n, desc=desc, unit="row", disable=not self.progress or n < 5_000, mininterval=2)
        out: list = []
        try:
            if self.workers == 1 or n < self.min_parallel:
                for a, b in spans:
                    interrupts.check()
                    out.append(fn(list(items[a:b])))
                    bar.update(b - a)
                return out
            pool = self.start()
            key, path = self._payload(fn)
            try:
                futures = [pool.submit(_run_chunk, (key, path, list(items[a:b]))) for a, b in spans]
                for (a, b), future in zip(spans, futures):
                    out.append(future.result())
                    interrupts.check()
                    bar.update(b - a)
            except BaseException:  # an interrupt or a failed batch: stop the workers, a later call starts new ones
                self.close()
                raise
            return out
        finally:
            bar.close()

    def close(self) -> None:
        """Stop the worker processes (a later parallel call starts new ones)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool = self._folder = self._finalizer = None

    def pairs(self, key_frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
        """Candidate pairs of all band-key frames, one frame (one LSH band) at a time to bound memory."""
        return pl.concat([candidate_pairs(k) for k in key_frames]).unique().sort(["first", "i"])


IN_PROCESS = LocalEngine(workers=1, progress=False)  # what a stage uses when it is given no engine


class _RayApply:
    """A Ray Data actor: unpickles the stage function once (loading its models), then maps one batch per block."""

    def __init__(self, payload: bytes):
        self.fn = pickle.loads(payload)

    def __call__(self, block):
        import pyarrow as pa

        result = self.fn(block["x"].to_pylist())
        return pa.table({"i": block["i"].slice(0, 1), "y": pa.array([pickle.dumps(result)], type=pa.binary())})


def _ray_group_pairs(batch):
    """One key group (Ray's map_groups): every member joined to the smallest row."""
    import pyarrow as pa

    rows = np.sort(batch["i"].to_numpy())
    if len(rows) < 2:
        return pa.table({"first": pa.array([], pa.int64()), "i": pa.array([], pa.int64())})
    return pa.table({"first": np.full(len(rows) - 1, rows[0], dtype=np.int64), "i": rows[1:].astype(np.int64)})


class RayEngine(_Engine):
    """Ray Data: the same stage functions as Ray actors, band-key grouping as a Ray shuffle.

    `address=None` starts a private local Ray instance with `workers` CPUs, whatever else runs on the machine: Ray's
    own default would join a cluster found through RAY_ADDRESS or the last `ray start` on it, which refuses the CPU
    count. `address="auto"`, `HOST:PORT` (the head's GCS port, from the driver on a cluster node) or
    `ray://host:10001` (Ray Client) joins a running cluster, with no resource arguments; its CPUs size the actor
    pools unless `workers` is given.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, progress: bool = True):
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError("the Ray engine needs Ray Data: pip install 'instructkit[ray]'") from exc
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.progress = progress
        self._started = not ray.is_initialized()  # a Ray session the caller opened stays open
        if self._started:
            kwargs = {"address": address} if address else {"address": "local", "num_cpus": self.workers, "include_dashboard": False}
            try:
                ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                from builders.errors import InputError

                raise InputError(f"cannot join the Ray cluster at {address!r}: {str(exc).splitlines()[0]}",
                                 field="ray_address") from None
        if address and not workers:  # a cluster: one actor per CPU it has, on every node
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.execution_options.preserve_order = True

    def map_batches(self, fn: Callable[[list], object], items: Sequence, *, batch_size: int = 2_000, desc: str = "") -> list:
        """fn applied to consecutive batches of `items` on an actor pool; one result per batch, in order."""
        import pyarrow as pa
        import ray.data
        from ray import cloudpickle  # by value where needed: workers may not import the caller's __main__

        if not len(items):
            return []
        spans = _chunks(len(items), batch_size)
        # one block per batch, so the actors share the work; `i` is the batch's position
        blocks = [pa.table({"i": pa.array([k] * (b - a), pa.int64()), "x": pa.array(list(items[a:b]))})
                  for k, (a, b) in enumerate(spans)]
        ds = ray.data.from_arrow(blocks)
        out = ds.map_batches(_RayApply, fn_constructor_args=(cloudpickle.dumps(fn),), batch_size=None, batch_format="pyarrow",
                             compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=1).to_arrow_refs()
        result = pa.concat_tables(ray.get(out)).sort_by("i")
        del ds, out
        gc.collect()  # releases the actor pool's CPUs now, not whenever the dataset is collected (a later shuffle waits on them)
        if result.num_rows != len(spans):
            raise RuntimeError(f"Ray returned {result.num_rows} results for {len(spans)} batches")
        return [pickle.loads(b) for b in result["y"].to_pylist()]

    def pairs(self, key_frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
        """All bands in one Ray shuffle by (band, context, key)."""
        import pyarrow as pa
        import ray
        import ray.data

        keys = pl.concat(list(key_frames))
        if keys.height == 0:
            return candidate_pairs(keys)
        groups = ray.data.from_arrow(keys.to_arrow()).groupby(["band", "ctx", "h"])
        got = pl.from_arrow(pa.concat_tables(ray.get(groups.map_groups(_ray_group_pairs, batch_format="pyarrow").to_arrow_refs())))
        return got.select(pl.col("first").cast(pl.Int64), pl.col("i").cast(pl.Int64)).unique().sort(["first", "i"])

    def close(self) -> None:
        import ray

        if self._started:
            ray.shutdown()


def make_engine(name: str = "local", *, workers: int | None = None, address: str | None = None, progress: bool = True):
    if name == "local":
        return LocalEngine(workers=workers, progress=progress)
    if name == "ray":
        return RayEngine(address=address, workers=workers, progress=progress)
    from builders.errors import InputError

    raise InputError(f"unknown engine {name!r} (local or ray)", field="engine")
