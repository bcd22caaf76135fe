"""What a new user meets in the first hour: instant help, one-line errors before any model loads, no silently
empty datasets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from instructkit.cli import main
from tests.conftest import ROOT, write_jsonl

HEAVY = ("sklearn", "torch", "transformers", "polars", "spacy", "scipy", "pandas", "pyarrow", "datasets", "trl",
         "presidio_analyzer")
# `train sft|rm|ppo|dpo --help` list TRL's own options (TrlParser), which need TRL and so torch: the one exception
COMMANDS = [[], ["build"], ["push"], ["pii"], ["classify"], ["taxonomy", "train"], ["taxonomy", "eval"], ["bench", "run"],
            ["bench", "pii"], ["bench", "generate"], ["eval"], ["score-toxicity"]]


def _heavy_modules_after(argv: list[str]) -> list[str]:
    code = ("import sys\nfrom instructkit.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "instructkit")
def test_help_imports_no_heavy_library(command):
    assert _heavy_modules_after([*command, "--help"]) == []


def test_a_bad_setting_is_refused_before_any_heavy_import():
    assert _heavy_modules_after(["build", "--ppo-sources", "apii"]) == []


def test_an_unknown_ppo_source_is_refused_with_the_known_ones(capsys):
    assert main(["build", "--ppo-sources", "api,apii"]) == 2
    assert capsys.readouterr().err.strip() == "instructkit: error: --ppo-sources: prompt sources are labeler, api: got 'apii'"


def test_a_prompt_limit_longer_than_the_pii_stage_reads_is_refused(capsys):
    assert main(["build", "--max-prompt-chars", "6000000"]) == 2
    assert "--max-prompt-chars: must be between 1 and 1,000,000" in capsys.readouterr().err


def test_an_output_path_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    afile = tmp_path / "outfile.txt"
    afile.write_text("mine")
    assert main(["build", "--out", str(afile), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (f"instructkit: error: --out: is a file, not a folder: give a folder for "
                                               f"sft/, rm/, ppo/ and build_report.json: {afile}")
    assert main(["build", "--out", str(afile / "sub"), "--quiet"]) == 2
    assert "--out: cannot write there" in capsys.readouterr().err
    assert afile.read_text() == "mine"


def _prompts_only(tmp_path):
    rows = [{"prompt_id": f"p{i}", "user_id": f"u{i % 5}", "source": "api",
             "text": f"Write a poem about the number {i} and the sea {i * 7}."} for i in range(12)]
    return write_jsonl(tmp_path / "prompts.jsonl", rows)


@pytest.mark.slow
def test_a_log_without_labels_is_an_error_that_says_which_datasets_and_why(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", "--source", f"jsonl:{_prompts_only(tmp_path)}", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "sft: 0 demonstrations after the pipeline: the input has no demonstration records" in err
    assert "rm: 0 comparisons after the pipeline: the input has no ranking records" in err
    assert "--allow-empty" in err and "ppo:" not in err
    assert not out.exists()


@pytest.mark.slow
def test_allow_empty_writes_empty_datasets_with_their_features(tmp_path):
    from datasets import load_dataset

    out = tmp_path / "out"
    assert main(["build", "--source", f"jsonl:{_prompts_only(tmp_path)}", "--out", str(out), "--quiet", "--allow-empty"]) == 0
    sft = load_dataset(str(out / "sft"), streaming=True)["train"]  # datasets refuses a 0-row split unless streaming
    assert list(sft) == [] and {"prompt", "completion", "messages"} <= set(sft.features)
    assert json.loads((out / "build_report.json").read_text())["datasets"]["sft"]["default"] == {"train": 0}
    assert load_dataset(str(out / "ppo"))["train"].num_rows > 0


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["sft", "rm", "ppo"])
def test_train_help_prints_the_trainers_options(trainer, capsys):
    assert main(["train", trainer, "--help"]) == 0  # `rm` crashed on an unescaped % in a help text
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--config" in out


@pytest.mark.parametrize("command", [["pii"], ["classify"], ["score-toxicity", "--scorer", "profanity-check"]])
def test_a_number_among_texts_is_an_error_not_quietly_made_text(command, tmp_path, capsys):
    src = write_jsonl(tmp_path / "mixed.jsonl", [{"id": 1, "text": "Who wrote Hamlet?"}, {"id": 2, "text": 123}])
    assert main([command[0], "--in", str(src), "--out", str(tmp_path / "o.jsonl"), *command[1:]]) == 2
    assert capsys.readouterr().err.strip() == (f"instructkit: error: {src}:2: field 'text': must be text, got int "
                                               "(line 1 has text)")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("command", ["classify", "pii"])
def test_a_row_keeps_its_own_fields_in_a_jsonl_output(command, tmp_path):
    """Rows of one file with different fields come back with their own fields and the command's own: no
    `"prompt": null` added to a row that had no `prompt` (classify reads `text`, `prompt` or `messages`), no
    `"source": null` to a row that had no `source`. A null the row gave stays."""
    if command == "classify":
        rows = [{"id": 1, "text": "Write a short poem about the sea."}, {"id": 2, "prompt": "Who wrote Hamlet?", "lang": None},
                {"id": 3, "messages": [{"role": "user", "content": "List 10 gift ideas for my dad."}]}]
        want = [["id", "text"], ["id", "prompt", "lang"], ["id", "messages"]]
    else:
        rows = [{"id": 1, "text": "Mail jo@example.com"}, {"id": 2, "text": "Who wrote Hamlet?", "lang": None},
                {"id": 3, "text": "Hi", "source": "web"}]
        want = [["id", "text"], ["id", "text", "lang"], ["id", "text", "source"]]
    out = tmp_path / "o.jsonl"
    assert main([command, "--in", str(write_jsonl(tmp_path / "in.jsonl", rows)), "--out", str(out)]) == 0
    added = ["category", "category_score"] if command == "classify" else []
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(row) for row in got] == [[*keys, *added] for keys in want]
    assert got[1]["lang"] is None and got[0]["text"] in ("Write a short poem about the sea.", "Mail <EMAIL_ADDRESS>")


@pytest.mark.slow
def test_a_second_build_into_a_folder_a_build_is_writing_is_refused_naming_that_build(tmp_path, capsys):
    """Two builds into one --out swapped their outputs in one after the other: the first one's silently vanished.
    The second now stops at once, naming the running build's process; once that build is gone the folder is free."""
    import os
    import time

    out = tmp_path / "out"
    # a real build, held where it would load the classifier (a build writing into `out`, for as long as this test needs)
    code = ("import sys, time, taxonomy.model as m\nm.load_model = lambda *a, **k: time.sleep(600)\n"
            "from instructkit.cli import main\nmain(['build', '--out', sys.argv[1], '--quiet'])")
    first = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".build-*/.owner-pid")):
            assert first.poll() is None and time.monotonic() < deadline, "the first build did not start"
            time.sleep(0.1)
        assert main(["build", "--out", str(out), "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == (f"instructkit: error: --out: another build (pid {first.pid}) is writing into "
                                                   f"this folder: wait for it to end, or give another folder: {out}")
        assert [p.name for p in out.iterdir()] == [next(out.glob(".build-*")).name]  # nothing of the second build
    finally:
        first.kill()
        first.wait()
    from builders.pipeline import _claim

    os.close(_claim(out))  # the lock went with the process


def test_a_worker_forked_during_a_build_does_not_keep_its_folder_locked(tmp_path):
    """The local engine's workers are forked while the build holds its --out and may outlive it (an engine kept for
    several builds): the lock ends with the build, not with them."""
    import os
    import time

    from builders.engine import LocalEngine
    from builders.errors import InputError
    from builders.pipeline import _claim, _release

    lock = _claim(tmp_path)
    engine = LocalEngine(workers=2, min_parallel=1, progress=False)
    try:
        engine.start()
        _release(lock)  # the build ends; its workers live on
        deadline = time.monotonic() + 30
        while True:  # a worker that had not set itself up yet still holds its copy for a moment
            try:
                os.close(_claim(tmp_path))
                break
            except InputError:
                assert time.monotonic() < deadline, "the engine's workers kept the folder locked"
                time.sleep(0.1)
        assert len(engine.worker_pids) == 2
    finally:
        engine.close()


@pytest.mark.parametrize("command", ["taxonomy", "bench", "train"])
def test_a_command_without_its_subcommand_names_what_is_missing_in_the_users_words(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(("required: COMMAND", "required: STAGE"))


def test_a_malformed_repo_id_is_refused_before_anything_is_read(tmp_path, capsys):
    assert main(["push", "sft", "--out", str(tmp_path), "--repo-id", "not a/valid//id"]) == 2
    assert capsys.readouterr().err.startswith("instructkit: error: --repo-id: not a Hub repository id ORG/NAME")


def test_push_without_a_token_says_how_to_give_one(sample_build, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", "sft", "--out", str(sample_build[0]), "--repo-id", "my-org/x"]) == 2
    assert capsys.readouterr().err.strip() == ("instructkit: error: no Hugging Face token: set HF_TOKEN or run "
                                               "`hf auth login` (a write token)")


def test_push_to_an_unreachable_hub_is_one_line(sample_build):
    import os

    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "0"}
    done = subprocess.run([sys.executable, "-m", "instructkit.cli", "push", "sft", "--out", str(sample_build[0]),
                           "--repo-id", "my-org/x"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["instructkit: error: cannot reach the Hub at http://127.0.0.1:9 "
                                                "(ConnectError): check the network, or HF_ENDPOINT"]
    assert "hf_not_a_real_token" not in done.stdout + done.stderr


def test_an_unwritable_config_folder_names_the_key_file_and_the_ways_out(tmp_path, monkeypatch):
    from builders.errors import InputError
    from builders.pseudonym import load_key

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.delenv("INSTRUCTKIT_PSEUDONYM_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))  # a file where the folder should be: no key can be made
    with pytest.raises(InputError, match=r"pseudonym.key: cannot create or read the pseudonym key .*: set "
                                         r"\$INSTRUCTKIT_PSEUDONYM_KEY to a secret, or XDG_CONFIG_HOME to a writable folder"):
        load_key()


def test_a_new_pseudonym_key_is_announced_once(tmp_path, monkeypatch, caplog):
    from builders.pseudonym import load_key

    monkeypatch.delenv("INSTRUCTKIT_PSEUDONYM_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with caplog.at_level("WARNING"):
        first, again = load_key(), load_key()
    assert first == again and [r.message for r in caplog.records].count(
        f"created a new pseudonym key file at {tmp_path / 'instructkit' / 'pseudonym.key'}: keep it to keep user "
        "pseudonyms stable") == 1


@pytest.mark.parametrize("command, shown", [("pii", "--in PATH"), ("classify", "--in PATH"), ("score-toxicity", "--in FILE")])
def test_help_names_the_input_as_a_path_not_an_internal_name(command, shown, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert shown in capsys.readouterr().out


def test_taxonomy_train_without_labels_names_the_flag(capsys):
    assert main(["taxonomy", "train", "--out", "x.skops"]) == 2
    assert capsys.readouterr().err.startswith("instructkit: error: --labels: give --labels FILE, --default (or both)")
