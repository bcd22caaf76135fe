"""Records with values of every JSON type in every field: each is kept or refused with its line and field, on the
record path and on the column-wise path the build reads with; nothing crashes with an error that names no line."""

from __future__ import annotations

import json
import random

import pytest

from builders.sources import load_source
from builders.stages.validate import Validator, validate

ODD = [None, 0, -1, 1.5, 10**20, -(10**20), True, "", " ", "x", "\u0000", "\ud800", [], [1], ["a", "b"], {}, {"a": 1},
       "2024-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", [0, 1], [1, 0], [0, 0], [0, 1, 2],
       [-1, 0], [0.5, 1], ["0", "1"], [{"role": "user", "content": "hi"}], [{"role": "user"}], [{"role": "bot", "content": "x"}],
       [{"role": "user", "content": 5}], "api", "labeler", "few_shot", "prompt", "demonstration", "ranking", float("nan"),
       1e308, "a" * 300, ["x"] * 3]
FIELDS = ["kind", "prompt_id", "user_id", "source", "prompt_type", "text", "messages", "created_at", "lang", "labeler_id",
          "completion", "completions", "ranks", "demonstration_id", "ranking_id"]


def _records(rnd: random.Random) -> list[dict]:
    rows = [{"prompt_id": f"p{i}", "user_id": "u", "source": "api", "text": "hello there", "created_at": "2024-01-01T00:00:00Z"}
            for i in range(3)]
    rows += [{"prompt_id": "p0", "labeler_id": "l", "completion": "ok"},
             {"prompt_id": "p1", "labeler_id": "l", "completions": ["a", "b"], "ranks": [0, 1]}]
    for _ in range(rnd.randint(1, 4)):
        rnd.choice(rows)[rnd.choice(FIELDS)] = rnd.choice(ODD)
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_odd_values_are_kept_or_refused_with_their_line_never_a_crash(tmp_path, seed):
    rnd = random.Random(seed)
    for trial in range(40):
        rows = _records(rnd)
        f = tmp_path / f"{trial}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")  # json.dumps escapes "\ud800"
        _, by_records = validate(list(load_source(f"jsonl:{f}").stream()), key=b"k", on_error="skip")
        v = Validator(key=b"k", on_error="skip")
        src = load_source(f"jsonl:{f}", on_error="skip")
        for _ in v.read_prompts(src):
            pass
        v.read_labels(src)
        _, by_frames = v.finish()
        assert by_frames.dropped.sort("record_id").to_dicts() == by_records.dropped.sort("record_id").to_dicts()
        assert by_records.counts_out == by_frames.counts_out
        # every record is kept or refused: the counts add up to the lines
        assert sum(by_records.counts_out.values()) + by_records.dropped.height == len(rows)
