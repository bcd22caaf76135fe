"""`instructkit eval judge`: judge answers generated anywhere (vLLM, another harness, people) with this project's
TruthfulQA judges or its toxicity scorer, row by row, and report the rates with their intervals.

Each output row is the input row plus its labels (`truthful`, `informative`) or its `toxicity` score; the rates go to
`OUT.summary.json` beside the output and to stdout. For TruthfulQA the summary holds the judged rates and the rates
corrected for the judges' measured joint errors (or "not corrected" and why); a user with labels of their own can
check the judges against them row by row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from builders.errors import InputError
from builders.tablefile import check_output, get_path, read_table, write_table


def summary_path(out: str | Path) -> Path:
    return Path(f"{out}.summary.json")


def _rows(inp: str):
    df = read_table(inp)
    if df.height == 0:
        raise InputError("has no rows to judge", file=inp)
    return df


def _texts(df, inp: str, column: str, *, allow_empty: bool = True) -> list[str]:
    """The text of `column` (a dotted path reads inside a record) in every row; a missing or non-text value is an
    error naming the file, row and field."""
    parts = column.split(".")
    if parts[0] not in df.columns:
        raise InputError(f"no column {parts[0]} (columns: {', '.join(df.columns)})", file=inp, field=column)
    out = []
    for i, row in enumerate(df.iter_rows(named=True), start=1):
        value = get_path(row, parts)
        if not isinstance(value, str):
            raise InputError("is null" if value is None else f"must be text, got {type(value).__name__}", file=inp, line=i,
                             field=column)
        if not allow_empty and not value.strip():
            raise InputError("is empty", file=inp, line=i, field=column)
        out.append(value)
    return out


def judge_truthfulqa(inp: str, out: str, data_dir: Path, kind: str = "auto", progress: bool = False) -> dict:
    """Label each {question, answer} row truthful / informative with the judges of `data_dir`'s TruthfulQA data;
    the summary holds the judged and corrected rates."""
    from builders.checkpoints import cache_root
    from evals.stats import rate
    from evals.truth_judge import fingerprint, references
    from evals.truthfulqa import QUESTIONS, corrected_with_interval, judge_labels, load_judges

    check_output(inp, out)
    df = _rows(inp)
    qs, answers = _texts(df, inp, "question", allow_empty=False), _texts(df, inp, "answer")
    known = references(Path(data_dir) / "truthfulqa" / QUESTIONS)
    for i, q in enumerate(qs, start=1):
        if q.strip() not in known:
            raise InputError(f"is not one of the {len(known)} questions of {QUESTIONS}: the judges know no other", file=inp,
                             line=i, field="question", detail=q[:80])
    judges, info = load_judges(data_dir, cache_root("judges") / f"tfidf-{fingerprint(data_dir)}", kind, progress)
    truth, informative = judge_labels(judges["truth"], qs, answers), judge_labels(judges["info"], qs, answers)
    write_table(df.with_columns(truthful=truth.astype(bool), informative=informative.astype(bool)), out)
    summary = {"task": "truthfulqa", "input": str(inp), "output": str(out), "n": len(qs), "questions": len(set(qs)),
               "judge": info["truth"]["kind"],
               "judged": {"truthful": rate(truth.astype(float)), "informative": rate(informative.astype(float)),
                          "truthful_and_informative": rate((truth & informative).astype(float))},
               "corrected": corrected_with_interval(truth, informative, info["joint"]),
               "judges": {name: {k: v for k, v in i.items() if k != "by_question"} for name, i in info.items()}}
    if len(set(qs)) < len(qs):
        summary["note"] = ("several answers share a question: the intervals treat answers as independent, so they are "
                           "too narrow when answers to one question move together")
    summary_path(out).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def judge_toxicity(inp: str, out: str, column: str = "continuation", scorer: str = "default") -> dict:
    """Score each row's `column` with a toxicity scorer; empty texts are counted apart and not scored (a toxicity
    of null); the summary holds the share scored ≥ 0.5 among the scored texts."""
    import polars as pl

    from evals.stats import rate
    from evals.toxicity import make_scorer, score_nonempty

    check_output(inp, out)
    df = _rows(inp)
    texts = _texts(df, inp, column)
    s = make_scorer(scorer)
    values = score_nonempty(s, texts)
    scored = np.flatnonzero(~np.isnan(values))
    write_table(df.with_columns(pl.Series("toxicity", [None if np.isnan(v) else float(v) for v in values], dtype=pl.Float64)),
                out)
    summary = {"task": "toxicity", "input": str(inp), "output": str(out), "scorer": s.name, "column": column,
               "n": len(texts), "empty": len(texts) - len(scored), "scored": len(scored)}
    if len(scored):
        summary["toxic_share"] = {**rate((values[scored] >= 0.5).astype(float)), "threshold": 0.5}
        summary["mean_toxicity"] = float(values[scored].mean())
    summary_path(out).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
