"""Engines: worker processes and Ray Data give byte-identical datasets to the in-process run."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from builders.engine import LocalEngine, candidate_pairs
from builders.pipeline import build
from builders.settings import BuildSettings


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "build_report.json"}


def _build(out: Path, scanner, classifier, engine) -> dict[str, bytes]:
    build(BuildSettings(out=str(out)), classifier=classifier, scanner=scanner, progress=False, engine=engine)
    return _files(out)


def test_worker_processes_give_identical_output(tmp_path, scanner, classifier, sample_build):
    out, _ = sample_build
    expected = _files(out)
    parallel = _build(tmp_path / "parallel", scanner, classifier, LocalEngine(workers=2, min_parallel=1, progress=False))
    assert parallel.keys() == expected.keys() and len(expected) >= 9
    assert parallel == expected


@pytest.mark.slow
def test_ray_engine_gives_identical_output(tmp_path, scanner, classifier, sample_build):
    pytest.importorskip("ray", reason="the Ray engine is an extra: pip install 'instructkit[ray]'")
    from builders.engine import RayEngine

    out, _ = sample_build
    engine = RayEngine(workers=2, progress=False)
    try:
        got = _build(tmp_path / "ray", scanner, classifier, engine)
    finally:
        engine.close()
    assert got == _files(out)


def test_candidate_pairs_join_each_group_to_its_smallest_row():
    import polars as pl

    keys = pl.DataFrame({"band": [0, 0, 0, 1, 1, 0], "ctx": [0, 0, 0, 0, 0, 1], "h": [7, 7, 7, 7, 7, 7], "i": [4, 2, 9, 4, 9, 3]})
    pairs = candidate_pairs(keys)
    # band 0: {2, 4, 9} -> (2,4), (2,9); band 1: {4, 9} -> (4,9); row 3 has another chat context: no pair
    assert pairs.rows() == [(2, 4), (2, 9), (4, 9)]


def test_candidate_pairs_match_the_groupwise_definition_on_random_keys_with_null_contexts():
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(3)
    n = 4_000
    keys = pl.DataFrame({"band": rng.integers(0, 3, n).astype(np.uint8), "ctx": pl.Series(rng.integers(0, 3, n), dtype=pl.UInt32),
                         "h": rng.integers(0, 400, n).astype(np.uint64), "i": rng.permutation(n).astype(np.int64)})
    keys = keys.with_columns(pl.when(pl.col("i") % 5 == 0).then(None).otherwise(pl.col("ctx")).alias("ctx"))
    groups: dict[tuple, list[int]] = {}
    for band, ctx, h, i in keys.iter_rows():
        groups.setdefault((band, ctx, h), []).append(i)
    expected = sorted({(min(rows), i) for rows in groups.values() for i in rows if i != min(rows)})
    assert len(expected) > 500 and candidate_pairs(keys).rows() == expected


def test_local_engine_keeps_order_across_workers():
    engine = LocalEngine(workers=2, min_parallel=1, progress=False)
    items = [f"t{i}" for i in range(2_500)]
    assert engine.map(_upper, items, batch_size=300) == [s.upper() for s in items]


def _upper(items: list[str]) -> list[str]:
    return [s.upper() for s in items]


class _LoadsOnce:
    """A stage function whose loading (unpickling, where a real one loads its models) leaves a line in a file."""

    def __init__(self, log: str):
        self.log = log

    def __reduce__(self):
        return (_loaded, (self.log,))

    def __call__(self, items: list) -> list:
        import os

        return [(os.getpid(), x) for x in items]


def _loaded(log: str) -> _LoadsOnce:
    import os

    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return _LoadsOnce(log)


def test_local_engine_loads_a_stage_function_once_per_worker_and_stops_its_workers(tmp_path):
    """PII and classify run batch after batch: each worker loads their models once for the whole build, not once
    per batch or per call; close() stops the workers."""
    import os

    log = tmp_path / "loads.txt"
    engine = LocalEngine(workers=2, min_parallel=1, progress=False)
    fn = _LoadsOnce(str(log))
    first = engine.map(fn, list(range(40)), batch_size=3)
    second = engine.map(fn, list(range(40)), batch_size=3)
    workers = set(engine.worker_pids)
    assert [x for _, x in first] == [x for _, x in second] == list(range(40))
    assert {pid for pid, _ in first + second} <= workers and len(workers) == 2
    loads = log.read_text(encoding="utf-8").split()
    assert len(loads) == len(set(loads)) <= 2 and {int(p) for p in loads} <= workers
    engine.close()
    assert engine.worker_pids == []
    for pid in workers:  # stopped and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_torch_classifier_runs_in_process_with_worker_engine():
    """The embed classifier's torch model hangs a forked worker once its thread pool has started; with a worker
    engine the executor runs the classify stage in-process, and it labels the same as the plain in-process run."""
    import json

    import polars as pl

    from builders.schema import Tables
    from builders.sources.files import SAMPLE_DIR
    from builders.executor import context_for
    from builders.settings import BuildSettings
    from builders.stages import Context
    from builders.stages.classify import STAGE, classify
    from taxonomy.model import load_default

    clf = load_default("embed")
    lines = (SAMPLE_DIR / "prompts.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    prompts = pl.DataFrame({"text": [json.loads(line)["text"] for line in lines]})
    tables = Tables(prompts, pl.DataFrame(), pl.DataFrame())
    clf.predict(["start the torch thread pool in this process"])

    def hung(signum, frame):
        raise TimeoutError("the classify stage hung in forked workers")

    import signal

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)  # a regression hangs rather than fails: make it fail
    try:
        ctx = Context(BuildSettings(), LocalEngine(workers=2, min_parallel=1, progress=False), classifier=clf)
        got, _ = STAGE.run(tables, context_for(STAGE, ctx))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    want, _ = classify(tables, clf)
    assert got.prompts["category"].to_list() == want.prompts["category"].to_list() == clf.predict(prompts["text"].to_list())[0]


@contextlib.contextmanager
def _ray_nodes(nodes: int = 1):
    """A Ray head and `nodes - 1` more nodes (one CPU each), each a `ray start --block` process in a session of its
    own, with a temporary folder of their own (RAY_TMPDIR: no other Ray user of this machine finds them through
    /tmp/ray). Yields the head's HOST:PORT and the environment a driver needs; at the end exactly these processes are
    stopped (`ray stop` would stop every Ray process of this user)."""
    pytest.importorskip("ray", reason="the Ray engine is an extra: pip install 'instructkit[ray]'")
    import os
    import secrets
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths under it must fit 107 characters
    # Ray 2.5x clusters authenticate with a token: the nodes and the driver share it, as on a real cluster
    env = {**os.environ, "RAY_TMPDIR": temp, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("RAY_ADDRESS", None)
    procs = []

    def start(*args: str) -> None:
        procs.append(subprocess.Popen([ray_bin, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", *args],
                                      env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait_for(ready, what: str) -> None:
        deadline = time.monotonic() + 180
        while not ready():
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.5)

    alive = "import ray; ray.init(address=%r, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))" % address
    try:
        start("--head", f"--port={port}", "--include-dashboard=false")
        wait_for(lambda: os.path.exists(os.path.join(temp, "ray", "ray_current_cluster")), "the Ray head")  # written once it is up
        for _ in range(nodes - 1):
            start(f"--address={address}")
        if nodes > 1:
            wait_for(lambda: subprocess.run([sys.executable, "-c", alive], env=env, capture_output=True, text=True,
                                            timeout=180).stdout.strip().endswith(str(nodes)), f"{nodes} Ray nodes")
        yield address, env
    finally:
        for p in reversed(procs):  # the other nodes, then the head
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


_ENGINE_ON_RAY = """
import json, sys
import ray
from builders.engine import RayEngine

def squares(xs):
    return [x * x for x in xs]

address = sys.argv[1] or None
engine = RayEngine(address=address, workers=None if address else 2, progress=False)
try:
    got = engine.map(squares, list(range(7)), batch_size=3)
    print(json.dumps({"workers": engine.workers, "cpus": ray.cluster_resources().get("CPU"),
                      "gcs": ray.get_runtime_context().gcs_address, "got": got}))
finally:
    engine.close()
"""


@pytest.mark.slow
def test_without_an_address_ray_starts_its_own_instance_beside_a_running_cluster_and_with_one_joins_it():
    """A Ray head already runs (`ray start --head`, as on a Ray user's machine, where Ray's default `ray.init()` finds
    it): `--engine ray` without an address starts a private instance with its own CPU count (Ray's default joined
    the head, which refused `num_cpus`), and with the head's address joins it with no resource arguments."""
    import json
    import subprocess
    import sys

    with _ray_nodes() as (address, env):
        def engine_on_ray(given: str) -> dict:
            done = subprocess.run([sys.executable, "-c", _ENGINE_ON_RAY, given], env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            return json.loads(done.stdout.strip().splitlines()[-1])

        private, joined = engine_on_ray(""), engine_on_ray(address)
    port = address.rpartition(":")[2]
    assert private["got"] == joined["got"] == [x * x for x in range(7)]
    # Ray names the head by the machine's address, not 127.0.0.1: the port tells the two apart
    assert private["workers"] == private["cpus"] == 2 and not private["gcs"].endswith(f":{port}")
    assert joined["workers"] == joined["cpus"] == 1 and joined["gcs"].endswith(f":{port}")


@pytest.mark.slow
def test_a_two_node_ray_cluster_gives_identical_output(tmp_path, sample_build):
    """A real cluster: a head and a second node started as separate processes (`ray start`, one CPU each), and
    `instructkit build --engine ray --ray-address HOST:PORT` run as its own driver process, as on KubeRay or a
    `ray up` cluster. Its datasets are byte-identical to the in-process build's. Both nodes are stopped at the end."""
    import subprocess
    import sys

    out = tmp_path / "cluster"
    with _ray_nodes(2) as (address, env):
        run = subprocess.run([sys.executable, "-m", "instructkit", "build", "--engine", "ray", "--ray-address", address,
                              "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
    expected, _ = sample_build
    assert _files(out) == _files(expected)
