"""`instructkit eval`, `instructkit eval compare DIR ...` and `instructkit score-toxicity`."""

from __future__ import annotations

import sys


def register(sub) -> None:
    from builders.flags import add_flags
    from evals.config import EvalConfig

    p = sub.add_parser("eval", help="score a checkpoint: preference win-rate, TruthfulQA, toxicity (or `eval compare DIR ...`)",
                       description="instructkit eval --model CKPT [settings]   or   instructkit eval compare DIR [DIR ...]")
    p.add_argument("compare", nargs="*", help="`compare DIR [DIR ...]`: put several eval outputs side by side")
    add_flags(p, EvalConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)
    s = sub.add_parser("score-toxicity", help="add a `toxicity` column to a JSONL/Parquet file")
    s.add_argument("--in", dest="inp", required=True, help="a .jsonl(.gz) or .parquet file")
    s.add_argument("--out", required=True, help="output file (.jsonl or .parquet); never the input")
    s.add_argument("--column", default="text", help="the column to score; a dotted path reads inside a record, e.g. "
                   "continuation.text for RealToxicityPrompts (default: text)")
    s.add_argument("--scorer", default="default", help="default (offline), hf:PATH_OR_ID or perspective")
    s.set_defaults(func=_cmd_score)


def _cmd_eval(args) -> int:
    if args.compare:
        if args.compare[0] != "compare" or len(args.compare) < 2:
            raise SystemExit("usage: instructkit eval compare DIR [DIR ...]   or   instructkit eval --model CKPT ...")
        from evals.report import compare

        try:
            print(compare(args.compare[1:]))
        except FileNotFoundError as exc:
            print(f"instructkit: error: {exc}", file=sys.stderr)
            return 2
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
