"""`instructkit eval`, `instructkit eval compare DIR ...` and `instructkit score-toxicity`."""

from __future__ import annotations

import sys


def register(sub) -> None:
    from builders.flags import add_flags
    from evals.config import EvalConfig

    p = sub.add_parser("eval", help="score a checkpoint: preference win-rate, TruthfulQA, toxicity (or `eval compare DIR ...`, "
                       "`eval train-judge`)",
                       description="instructkit eval --model CKPT [settings]   or   instructkit eval compare DIR [DIR ...]   or   "
                       "instructkit eval train-judge [--data-dir DIR]")
    p.add_argument("compare", nargs="*", metavar="compare DIR ... | train-judge | train-toxicity | judge",
                   help="`compare DIR [DIR ...]`: put several eval outputs side by side; `train-judge`: train TruthfulQA's "
                   "reference truth/info judges once (resumable; cached in ~/.cache/instructkit/judges or "
                   "$INSTRUCTKIT_CACHE/judges) and print their held-out accuracy beside the TF-IDF judges'; "
                   "`train-toxicity`: train the minilm toxicity head on RealToxicityPrompts into --out and print every "
                   "offline scorer's agreement with Perspective and with people; `judge --task truthfulqa|toxicity --in "
                   "FILE --out FILE`: label answers generated anywhere, rates (judged and corrected) in OUT.summary.json")
    add_flags(p, EvalConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--task", choices=("truthfulqa", "toxicity"), help="`eval judge`: label TruthfulQA answers or score "
                   "toxicity")
    p.add_argument("--in", dest="inp", metavar="FILE", help="`eval judge`: a .jsonl(.gz) or .parquet file of {question, "
                   "answer} rows (truthfulqa) or texts to score (toxicity)")
    p.add_argument("--column", default="continuation", help="`eval judge --task toxicity`: the text field (dotted for "
                   "inside a record; default: continuation)")
    p.set_defaults(func=_cmd_eval)
    s = sub.add_parser("score-toxicity", help="add a `toxicity` column to a JSONL/Parquet file")
    s.add_argument("--in", dest="inp", required=True, metavar="FILE", help="a .jsonl(.gz) or .parquet file")
    s.add_argument("--out", required=True, help="output file (.jsonl or .parquet); never the input")
    s.add_argument("--column", default="text", help="the column to score; a dotted path reads inside a record, e.g. "
                   "continuation.text for RealToxicityPrompts (default: text)")
    s.add_argument("--scorer", default="default", help="default (= minilm, offline), minilm:HEAD.skops, profanity-check, "
                   "hf:PATH_OR_ID or perspective")
    s.set_defaults(func=_cmd_score)


def _cmd_eval(args) -> int:
    if args.compare == ["train-judge"]:
        return _cmd_train_judge(args)
    if args.compare == ["train-toxicity"]:
        return _cmd_train_toxicity(args)
    if args.compare == ["judge"]:
        return _cmd_judge(args)
    if args.compare:
        if args.compare[0] != "compare" or len(args.compare) < 2:
            print("usage: instructkit eval compare DIR [DIR ...]   or   instructkit eval train-judge   or   "
                  "instructkit eval judge --task truthfulqa|toxicity --in FILE --out FILE   or   "
                  "instructkit eval --model CKPT ...", file=sys.stderr)
            return 2
        from evals.report import compare

        print(compare(args.compare[1:]))  # a folder or results.json that is not one raises InputError: one line, status 2
        return 0
    from builders.errors import InputError, with_flag
    from builders.flags import given

    if not args.model:
        raise InputError("the checkpoint to score is missing (or use `instructkit eval compare DIR ...`)", flag="--model")
    from evals.config import EvalConfig
    from evals.report import headline
    from evals.run import run_eval

    cfg = EvalConfig(**given(args, EvalConfig), progress=not args.quiet)

    try:
        results = run_eval(cfg)
    except InputError as exc:
        raise with_flag(exc, "--toxicity-scorer") from None
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"instructkit: error: {exc}", file=sys.stderr)
        return 2
    for k, v in headline(results).items():
        print(f"{k:<40} {v}")
    print(f"wrote {cfg.out}/results.json, report.md and plots")
    return 0


def _cmd_train_judge(args) -> int:
    from builders.flags import given
    from evals import truth_judge
    from evals.config import EvalConfig
    from evals.run import _need_data
    import numpy as np

    from evals.truthfulqa import CELLS, FILES, train_tfidf

    cfg = EvalConfig(**given(args, EvalConfig), progress=not args.quiet)
    try:
        data_dir = _need_data(cfg)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"instructkit: error: {exc}", file=sys.stderr)
        return 2
    kinds = {"reference": truth_judge.train(data_dir, seed=cfg.seed, progress=cfg.progress),
             "tfidf": train_tfidf(data_dir, seed=cfg.seed)[1]}
    ref = kinds["reference"]["truth"]
    print(f"held out by question, on the labeled answers that are not copies of their question's reference answers "
          f"({ref['excluded']['reference_copies']} of {ref['all_rows']['rows']} rows left out)")
    print(f"{'judge':<8} {'kind':<10} {'rows':>7} {'held-out accuracy':>18} {'majority':>9} {'sensitivity':>12} "
          f"{'specificity':>12} {'all rows (acc.)':>16}")
    for name in FILES:
        for kind, infos in kinds.items():
            i = infos[name]
            print(f"{name:<8} {kind:<10} {i['rows']:>7} {i['held_out_accuracy']:>18.3f} {i['majority_baseline']:>9.3f} "
                  f"{i['sensitivity']:>12.3f} {i['specificity']:>12.3f} {i['all_rows']['held_out_accuracy']:>16.3f}")
    for kind, infos in kinds.items():
        joint = infos["joint"]
        print(f"\n{kind}: P(judged cell | true cell), {joint['rows']} rows in both label files, {joint['questions']} "
              "questions\n" + "true cell / judged cell".ljust(24) + "".join(f"{c:>25}" for c in CELLS))
        for cell, row, n in zip(CELLS, joint["matrix"], np.sum(joint["counts"], axis=1)):
            print(f"{cell:<24}" + "".join(f"{v:>25.3f}" for v in row or [float("nan")] * 4) + f"   ({n} rows)")
    print(f"saved in {truth_judge.judge_folder(data_dir)}; `instructkit eval` uses them for this TruthfulQA data")
    return 0


def _cmd_judge(args) -> int:
    """`eval judge --task truthfulqa|toxicity --in FILE --out FILE`: labels per row, rates in OUT.summary.json."""
    import json
    from pathlib import Path

    from builders.errors import InputError, with_flag
    from evals.judge_file import judge_toxicity, judge_truthfulqa, summary_path
    from evals.truthfulqa import JUDGES

    for flag, value in (("--task", args.task), ("--in", args.inp), ("--out", args.out)):
        if not value:
            raise InputError("is needed by `eval judge`", flag=flag)
    if args.task == "toxicity":
        try:
            summary = judge_toxicity(args.inp, args.out, args.column, args.toxicity_scorer or "default")
        except InputError as exc:
            raise with_flag(exc, "--toxicity-scorer") from None
    else:
        kind = args.judge or args.truthfulqa_judge or "auto"
        if kind not in JUDGES:
            raise InputError(f"must be one of {', '.join(JUDGES)} for `eval judge`", flag="--judge", detail=kind)
        if not args.data_dir:
            raise InputError("needs TruthfulQA's question file and judge data (e.g. ../shared/data)", flag="--data-dir")
        summary = judge_truthfulqa(args.inp, args.out, Path(args.data_dir), kind, progress=not args.quiet)
    print(json.dumps(summary))
    print(f"wrote {args.out} and {summary_path(args.out)}", file=sys.stderr)
    return 0


def _cmd_train_toxicity(args) -> int:
    from pathlib import Path

    from builders.errors import InputError
    from builders.flags import given
    from evals.config import EvalConfig
    from evals.toxicity_head import SHIPPED, table, train_and_measure

    cfg = EvalConfig(**given(args, EvalConfig), progress=not args.quiet)  # an unset --seed is None in args: the default
    if not cfg.data_dir:
        raise InputError("needs the RealToxicityPrompts sample and the human-labeled probes (e.g. ../shared/data)",
                         flag="--data-dir")
    print(table(train_and_measure(Path(cfg.data_dir), Path(cfg.out), seed=cfg.seed)))
    head = Path(cfg.out) / SHIPPED.name
    print(f"wrote {head} (use it with --toxicity-scorer minilm:{head}) and the numbers beside it")
    return 0


def _cmd_score(args) -> int:
    import polars as pl

    from builders.errors import InputError, with_flag
    from builders.tablefile import check_output, get_path, read_table, write_table
    from evals.toxicity import make_scorer

    check_output(args.inp, args.out)
    df = read_table(args.inp)
    parts = args.column.split(".")
    if parts[0] not in df.columns:
        raise InputError(f"no column {parts[0]} (columns: {', '.join(df.columns)})", file=args.inp, flag="--column")
    texts = []
    for i, row in enumerate(df.iter_rows(named=True), start=1):
        value = get_path(row, parts)
        if not isinstance(value, str):
            raise InputError("is null" if value is None else f"must be text, got {type(value).__name__}", file=args.inp,
                             line=i, field=args.column)
        texts.append(value)
    try:
        scorer = make_scorer(args.scorer)
    except InputError as exc:
        raise with_flag(exc, "--scorer") from None
    df = df.with_columns(pl.Series("toxicity", scorer.score(texts), dtype=pl.Float64))
    write_table(df, args.out)
    print(f"scored {df.height} texts with {scorer.name}; wrote {args.out}", file=sys.stderr)
    return 0
