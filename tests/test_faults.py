"""Faults and bad input: Ctrl-C and SIGTERM stop a build in seconds and leave the old outputs as they were, a killed
build's leftovers are cleared by the next one, skipped records are counted by reason (never listed in a card),
nothing is silently changed, and every command fails with one line and status 2."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from instructkit.cli import main
from builders.pipeline import build, remove_stale_temporaries
from builders.settings import BuildSettings
from tests.conftest import generated_log, prompt, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "instructkit"]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def big_log(tmp_path_factory, shared) -> Path:
    """25,000 prompts: enough for the build to fork its worker pool."""
    return generated_log(tmp_path_factory.mktemp("interrupt"), shared, 25000, 5)


@pytest.fixture(scope="module")
def built_out(tmp_path_factory, scanner, classifier) -> Path:
    """A folder holding a finished build, which interrupted builds into it must leave byte-identical."""
    out = tmp_path_factory.mktemp("interrupt_out") / "out"
    build(BuildSettings(out=str(out)), classifier=classifier, scanner=scanner, progress=False)
    return out


def _ctrl_c_enabled() -> None:
    """A child's SIGINT at its default, as a terminal runs a command: a test run started as a background job has it
    ignored, and its children with it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_build(log: Path, out: Path, stderr_path: Path) -> subprocess.Popen:
    """`instructkit build` in its own process group with Ctrl-C enabled, as a terminal runs it."""
    return subprocess.Popen([*CLI, "-v", "build", "--source", f"parquet:{log}", "--out", str(out), "--quiet", "--workers", "2"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(stderr_path, "w"), start_new_session=True,
                            preexec_fn=_ctrl_c_enabled)


def _wait_for(condition, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("the build never reached the point to interrupt")


@pytest.mark.slow
@pytest.mark.parametrize("point,sig", [("started", "SIGINT"), ("spilled", "SIGINT"), ("pass 2", "SIGINT"), ("pass 2", "SIGTERM")])
def test_an_interrupted_build_stops_in_seconds_and_leaves_the_old_outputs(big_log, built_out, tmp_path, point, sig):
    before = tree_digest(built_out)
    err = tmp_path / "stderr.txt"
    proc = _start_build(big_log, built_out, err)
    temporaries = lambda: list(built_out.glob(".build-*"))  # noqa: E731
    try:
        if point == "started":
            _wait_for(lambda: temporaries())
        elif point == "spilled":
            _wait_for(lambda: any(t.glob(".spill/*.parquet") for t in temporaries()))
        else:  # PII and classification, a batch at a time, on the worker pool
            _wait_for(lambda: "split_by_user" in err.read_text())
        sent = time.time()
        os.killpg(proc.pid, getattr(signal, sig))
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 130 and time.time() - sent < 15, f"status {rc} after {time.time() - sent:.1f} s; stderr:\n{err.read_text()[-3000:]}"
    assert err.read_text().strip().splitlines()[-1] == "instructkit: interrupted", err.read_text()[-3000:]
    assert not temporaries() and tree_digest(built_out) == before


@pytest.mark.slow
def test_a_killed_builds_leftovers_go_with_the_next_build_and_a_running_ones_stay(big_log, tmp_path, scanner, classifier):
    out = tmp_path / "out"
    proc = _start_build(big_log, out, tmp_path / "stderr.txt")
    try:
        _wait_for(lambda: any(out.glob(".build-*/.spill/*.parquet")))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stale = list(out.glob(".build-*"))
    assert stale  # kill -9 runs no cleanup
    running = out / ".build-running"
    running.mkdir()
    (running / ".owner-pid").write_text(str(os.getpid()))  # a build still in progress (this process)
    build(BuildSettings(out=str(out)), classifier=classifier, scanner=scanner, progress=False)
    assert [p.name for p in out.glob(".build-*")] == [".build-running"]
    assert remove_stale_temporaries(out) == []


def test_a_failed_first_build_leaves_no_output_folder(tmp_path, scanner, classifier):
    from builders.errors import InputError

    log = write_jsonl(tmp_path / "log.jsonl", [prompt("a", "Hello there, what is a bird?"), {"prompt_id": "b", "user_id": "u"}])
    out = tmp_path / "new" / "out"
    with pytest.raises(InputError):
        build(BuildSettings(sources=[f"jsonl:{log}"], out=str(out)), classifier=classifier, scanner=scanner, progress=False)
    assert not out.exists()


def test_thousands_of_skipped_records_are_counted_by_reason_never_listed_in_a_card(tmp_path, capsys, scanner, classifier):
    rows = [prompt(f"g{i}", f"Write a short poem about the number {i}.", user=f"u{i}") for i in range(40)]
    rows += [prompt(f"b{i}", f"Secret request {i}", user=f"u{i}", source=f"bot-{i}-private") for i in range(3000)]
    log = write_jsonl(tmp_path / "private_logs.jsonl", rows)
    out = tmp_path / "out"
    assert main(["build", "--source", f"jsonl:{log}", "--out", str(out), "--on-error", "skip", "--quiet", "--allow-empty"]) == 0
    console = capsys.readouterr().out
    assert max(len(line) for line in console.splitlines() if not line.startswith("wrote")) < 200 and "bot-" not in console
    for name in ("sft", "rm", "ppo"):
        card = (out / name / "README.md").read_text(encoding="utf-8")
        assert len(card) < 20_000 and str(tmp_path) not in card and "bot-17" not in card
        assert "invalid: field 'source': must be one of" in card and "`jsonl:private_logs.jsonl`" in card
    report = json.loads((out / "build_report.json").read_text())
    validate = next(s for s in report["stages"] if s["name"] == "validate")
    assert validate["dropped"] == {"invalid: field 'source': must be one of labeler, api": 3000}
    dropped = [r for r in report["dropped_records"] if r["stage"] == "validate"]
    assert len(dropped) == 3000 and any(r["record_id"].endswith("private_logs.jsonl:41") for r in dropped)  # file:line
    assert not any("bot-" in r["reason"] for r in dropped)


def test_ambiguous_or_lossy_input_is_an_error_or_a_reported_choice(tmp_path, scanner, classifier):
    from builders.errors import InputError

    both = write_jsonl(tmp_path / "both.jsonl", [prompt("a", "Hi", messages=[{"role": "user", "content": "Hello"}])])
    with pytest.raises(InputError, match="both `text` and `messages`"):
        build(BuildSettings(sources=[f"jsonl:{both}"], out=str(tmp_path / "o1")), classifier=classifier, scanner=scanner, progress=False)
    rows = [prompt("p", "Which answer is better?", source="labeler"),
            {"prompt_id": "p", "labeler_id": "l", "completions": ["a", "b", "c"], "ranks": [1, 1, 1]},
            {"prompt_id": "p", "labeler_id": "l", "completions": ["a", "b"], "ranks": [0, 1]}]
    out = tmp_path / "o2"
    report = build(BuildSettings(sources=[f"jsonl:{write_jsonl(tmp_path / 'tied.jsonl', rows)}"], out=str(out), allow_empty=True),
                   classifier=classifier, scanner=scanner, progress=False)
    validate = next(s for s in report["stages"] if s["name"] == "validate")
    assert validate["records"]["ranking"]["dropped"] == {"all_completions_tied": 1}
    assert pl.read_parquet(next((out / "rm" / "rankings").glob("*.parquet")), columns=["ranks"])["ranks"].to_list() == [[0, 1]]


def _run(argv, capsys) -> tuple[int, list[str]]:
    rc = main(argv)
    return rc, capsys.readouterr().err.strip().splitlines()


def test_every_command_fails_with_one_line_naming_the_file_or_flag(tmp_path, capsys):
    null = write_jsonl(tmp_path / "null.jsonl", [{"text": None}])
    ok = write_jsonl(tmp_path / "ok.jsonl", [{"text": "a fine day"}])
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("cap_per_user: 0\n")
    cases = [
        (["build", "--cap-per-user", "0"], "--cap-per-user"),
        (["build", "--config", str(bad_yaml)], f"{bad_yaml}: field 'cap_per_user'"),
        (["build", "--source", "logs.jsonl"], "--source"),
        (["build", "--source", f"jsonl:{tmp_path / 'nope.jsonl'}"], "nope.jsonl"),
        (["pii", "--in", str(null), "--out", str(tmp_path / "o.jsonl")], f"{null}:1: field 'text': is null"),
        (["pii", "--in", str(ok), "--out", str(ok)], "--out"),
        (["pii", "--in", str(ok), "--out", str(tmp_path / "o.csv")], "--out"),
        (["classify", "--in", str(ok), "--out", str(tmp_path / "c.jsonl"), "--model", "nosuch"], "--classifier"),  # --model is its alias
        (["score-toxicity", "--in", str(null), "--out", str(tmp_path / "t.jsonl")], f"{null}:1: field 'text'"),
        (["score-toxicity", "--in", str(ok), "--out", str(tmp_path / "t.jsonl"), "--scorer", "bogus"], "--scorer"),
        (["score-toxicity", "--in", str(ok), "--out", str(tmp_path / "t.jsonl"), "--scorer", "hf:/missing"], "--scorer"),
        (["score-toxicity", "--in", str(ok), "--out", str(tmp_path / "t.jsonl"), "--column", "nope"], "--column"),
        (["eval", "compare", str(tmp_path / "missing")], "missing"),
        (["push", str(tmp_path / "missing"), "--repo-id", "a/b"], "missing"),
        (["taxonomy", "eval", "--labels", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
        (["train", "sft", "--config", str(tmp_path / "missing.yaml")], "--config"),
        (["train", "sft"], "--model_name_or_path"),
        (["train", "rm", "--model_name_or_path", str(tmp_path), "--dataset", str(tmp_path / "no_rm")], "no_rm"),
        (["train", "rm", "--model_name_or_path", str(tmp_path), "--load_in_4bit", "true"], "--load_in_4bit"),
        (["build", "--split-ratios", "train=0.9,valid=0.1"], "--split-ratios"),
        (["build", "--dedup-threshold", "1.5"], "--dedup-threshold"),
        (["eval", "--tasks", "winrate"], "--model"),
        (["eval", "--model", str(tmp_path / "no_model"), "--tasks", "toxicity", "--limit", "2"], "no_model: no such folder"),
        (["train", "ppo", "--output_dir", str(tmp_path / "ppo_out")], "runs/sft: not a local folder"),  # its default policy
        (["bench", "run", "--sizes", "abc"], "--sizes"),
        (["bench", "generate", "--n", "10", "--out", str(tmp_path / "g"), "--data-dir", str(tmp_path / "no")], "--data-dir"),
    ]
    for argv, named in cases:
        rc, lines = _run(argv, capsys)
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("instructkit: error:") and named in lines[0], (argv, lines)
        assert "<input>" not in lines[0]
    os.environ.pop("PERSPECTIVE_API_KEY", None)
    rc, lines = _run(["score-toxicity", "--in", str(ok), "--out", str(tmp_path / "t.jsonl"), "--scorer", "perspective"], capsys)
    assert rc == 2 and lines == ["instructkit: error: --scorer: the perspective scorer needs $PERSPECTIVE_API_KEY"]
    rc, lines = _run(["-v", "build", "--cap-per-user", "0"], capsys)  # -v shows where the error came from
    assert rc == 2 and lines[0].startswith("Traceback") and lines[-1].startswith("instructkit: error:")


def test_pii_and_classify_read_the_projects_own_dataset_folders(sample_build, tmp_path, capsys):
    from datasets import load_dataset

    out, _ = sample_build
    assert main(["pii", "--in", str(out / "rm"), "--out", str(tmp_path / "rm")]) == 0
    pairs = load_dataset(str(tmp_path / "rm"), split="train")
    assert "<PERSON>" in json.dumps(list(pairs["chosen"]) + list(pairs["rejected"]) + list(pairs["prompt"]))
    rankings = load_dataset(str(tmp_path / "rm"), "rankings", split="train")  # lists of strings are scanned too
    assert len(rankings) == len(load_dataset(str(out / "rm"), "rankings", split="train"))
    assert main(["pii", "--in", str(out / "sft" / "data" / "train-00000-of-00001.parquet"), "--out", str(tmp_path / "sft.parquet"),
                 "--column", "completion"]) == 0
    assert main(["classify", "--in", str(out / "ppo"), "--out", str(tmp_path / "ppo")]) == 0
    assert set(load_dataset(str(tmp_path / "ppo"), split="test")["category"]) > set()
    assert "wrote" in capsys.readouterr().err


def test_score_toxicity_reads_a_nested_column(tmp_path):
    rows = [{"prompt": {"text": "so"}, "continuation": {"text": "you stupid idiot, shut up"}},
            {"prompt": {"text": "and"}, "continuation": {"text": "have a lovely day"}}]
    src = write_jsonl(tmp_path / "rtp.jsonl", rows)
    assert main(["score-toxicity", "--in", str(src), "--out", str(tmp_path / "o.jsonl"), "--column", "continuation.text"]) == 0
    scored = [json.loads(line)["toxicity"] for line in open(tmp_path / "o.jsonl")]
    assert scored[0] > 0.5 > scored[1]


def test_an_interrupt_swallowed_inside_c_code_still_stops_the_reading(tmp_path, monkeypatch):
    """pyarrow's to_pylist runs Python callbacks and ignores what they raise: a Ctrl-C landing there was lost and the
    build ran to the end. The handler records it, and the readers raise it again between batches and records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from builders import interrupts
    from builders.sources import load_source

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt_id": ["a", "b"], "user_id": ["u", "u"], "source": ["api"] * 2, "text": ["x", "y"]}), path)
    monkeypatch.setattr(interrupts, "_pending", True)  # as if KeyboardInterrupt had been raised and swallowed
    with pytest.raises(KeyboardInterrupt):
        next(load_source(f"parquet:{path}").stream())
    monkeypatch.setattr(interrupts, "_pending", False)
    assert len(list(load_source(f"parquet:{path}").stream())) == 2


def _in_a_fresh_process(script: str) -> list[str]:
    """Run `script` in a new Python with Ctrl-C enabled (none of the test session's threads and handlers) and return
    what it printed, a word at a time."""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          preexec_fn=_ctrl_c_enabled)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_signal_inside_held_waits_for_the_block_even_with_other_threads_running():
    """The output swap and the workers' fork hold Ctrl-C to their end. Masking the signal held it off the main thread
    only: with polars' threads started, the kernel handed it to one of them and Python raised it mid-swap."""
    assert _in_a_fresh_process("""if True:
        import os, signal, time
        import polars as pl
        from builders import interrupts

        pl.DataFrame({"a": list(range(200_000))}).sort("a")  # polars' thread pool is running now
        interrupts.install()
        try:
            with interrupts.held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the handler would run here, mid-block, if the signal were not held
                print("block-done")
        except KeyboardInterrupt:
            print("raised-after", interrupts.arrived())
        interrupts.install()
        with interrupts.held():  # nothing arrives: nothing is raised
            print("quiet-block", interrupts.arrived())
    """) == ["block-done", "raised-after", "True", "quiet-block", "False"]


def test_ctrl_c_just_as_the_build_makes_its_temporary_folder_leaves_nothing(tmp_path):
    """The temporary folder was made before the `try` that removes it: Ctrl-C right after it was made left it behind
    (and the new, empty --out folder with it)."""
    out = tmp_path / "new" / "out"
    assert _in_a_fresh_process(f"""if True:
        import os, signal, tempfile
        from builders import interrupts, pipeline
        from builders.settings import BuildSettings

        real_mkdtemp = tempfile.mkdtemp

        def mkdtemp_as_ctrl_c_arrives(*args, **kwargs):
            folder = real_mkdtemp(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)
            return folder

        tempfile.mkdtemp = mkdtemp_as_ctrl_c_arrives
        interrupts.install()
        try:
            pipeline.build(BuildSettings(out={str(out)!r}), classifier=object(), progress=False)
        except KeyboardInterrupt:
            print("interrupted")
    """) == ["interrupted"]
    assert not out.exists()


def test_ctrl_c_while_the_workers_fork_is_an_interrupt_not_a_broken_pool():
    """Ctrl-C reaches the whole process group. Arriving while the pool forked its workers, it killed a worker before
    the worker set its own handlers, or stopped the pool's thread half-started, and the build failed with a
    RuntimeError (status 1) instead of stopping with 130. Here it reaches the parent and each worker in the fork."""
    assert _in_a_fresh_process("""if True:
        import os, signal
        from concurrent.futures import ProcessPoolExecutor
        import builders.engine
        from builders import interrupts

        real_submit, real_init = ProcessPoolExecutor.submit, builders.engine._init_worker

        def submit_as_ctrl_c_arrives(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            return real_submit(self, *args, **kwargs)

        def init_after_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)  # before the worker's own handlers
            real_init()

        ProcessPoolExecutor.submit, builders.engine._init_worker = submit_as_ctrl_c_arrives, init_after_ctrl_c
        interrupts.install()
        engine = builders.engine.LocalEngine(2, progress=False)
        try:
            engine.start()
        except KeyboardInterrupt:
            print("interrupted")
        ProcessPoolExecutor.submit = real_submit
        workers = {engine._pool.submit(os.getpid).result(timeout=30) for _ in range(20)}
        print(len(engine.worker_pids), workers <= set(engine.worker_pids))  # both alive: the pool works
        engine.close()
        print(engine.worker_pids)
    """) == ["interrupted", "2", "True", "[]"]


def test_an_error_that_follows_an_interrupt_exits_as_interrupted(monkeypatch, capsys):
    """Whatever a command fails with after Ctrl-C arrived (a pool that a worker's death broke, a thread stopped
    half-started) is the interrupt's doing: status 130 and one line, as for a KeyboardInterrupt. Other errors are
    raised as they were."""
    import builders.cli
    from builders import interrupts

    def broken_by_an_interrupt(args):
        try:
            interrupts.interrupt()
        except KeyboardInterrupt:
            pass  # swallowed, as in at-fork hooks and pyarrow's callbacks
        raise RuntimeError("cannot join thread before it is started")

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(builders.cli, "_cmd_build", broken_by_an_interrupt)
    assert main(["build", "--out", "x"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "instructkit: interrupted"
    monkeypatch.setattr(builders.cli, "_cmd_build", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["build", "--out", "x"])


def test_ctrl_c_whose_handler_runs_while_an_error_is_being_handled_still_exits_as_interrupted(monkeypatch, capsys):
    """Python runs a signal's handler at the next bytecode: when a command failed of the signal's consequence first
    (a C call cut short, a worker gone), the handler's KeyboardInterrupt lands inside the error handling. It left
    main() uncaught and Python died by SIGINT (status -2 in CI) instead of exiting 130."""
    import builders.cli
    from builders import interrupts

    def broken(args):
        raise OSError(4, "Interrupted system call")

    def handler_runs_now():
        raise KeyboardInterrupt

    monkeypatch.setattr(builders.cli, "_cmd_build", broken)
    monkeypatch.setattr(interrupts, "arrived", handler_runs_now)
    assert main(["build", "--out", "x"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "instructkit: interrupted"


def test_the_program_exits_130_on_a_ctrl_c_outside_the_commands_handlers(monkeypatch, capsys):
    import instructkit.cli

    def late(argv=None, program=False):
        raise KeyboardInterrupt  # after main() restored the handlers: Python's own handler raised it

    monkeypatch.setattr(instructkit.cli, "main", late)
    assert instructkit.cli.console() == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "instructkit: interrupted"


def test_the_program_ignores_a_ctrl_c_that_arrives_while_it_exits():
    """After the command is done, Python's teardown would reset SIGINT to its default action (death by the signal, not
    status 130); the program leaves it ignored instead. Here a second Ctrl-C arrives after 'interrupted'."""
    script = """if True:
        import os, signal, sys
        import builders.cli
        from instructkit.cli import console

        def interrupted(args):
            raise KeyboardInterrupt

        builders.cli._cmd_build = interrupted
        sys.argv = ["instructkit", "build", "--out", "x"]
        code = console()
        os.kill(os.getpid(), signal.SIGINT)  # late: the handlers are gone
        print("alive", code)
        sys.exit(code)
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          preexec_fn=_ctrl_c_enabled)
    assert (done.returncode, done.stdout.split()) == (130, ["alive", "130"]), done.stderr


def test_a_forked_worker_ignores_ctrl_c_before_its_own_set_up():
    """A worker forked with the parent's handler must not raise KeyboardInterrupt in its start-up (its pool would
    break): only the process that installed the handlers is interrupted by them."""
    assert _in_a_fresh_process("""if True:
        import os
        from builders import interrupts

        interrupts.install()
        pid = os.fork()
        if pid == 0:
            interrupts.interrupt()  # what SIGINT runs in the child before its initializer
            os._exit(7)
        print(os.waitpid(pid, 0)[1] >> 8)
        try:
            interrupts.interrupt()
        except KeyboardInterrupt:
            print("interrupted")
    """) == ["7", "interrupted"]


def test_verbose_logs_the_stages_not_the_libraries(capsys):
    """`-v` shows instructkit's own stage log; torch's INFO (FakeTensor cache stats printed at exit, after
    "instructkit: interrupted") stays off."""
    import logging

    from instructkit.cli import OWN_LOGGERS

    levels = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    try:
        main(["-v", "build", "--cap-per-user", "0"])
        assert logging.getLogger("builders.executor").isEnabledFor(logging.INFO)
        assert not logging.getLogger("torch._subclasses.fake_tensor").isEnabledFor(logging.INFO)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
