"""`instructkit eval`, `instructkit eval compare DIR ...` and `instructkit score-toxicity`."""

from __future__ import annotations

import sys


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score a checkpoint: preference win-rate, TruthfulQA, toxicity (or `eval compare DIR ...`)")
    p.add_argument("compare", nargs="*", help="`compare DIR [DIR ...]`: put several eval outputs side by side")
    p.add_argument("--model", help="checkpoint to score: local path or Hub id of a causal LM")
    p.add_argument("--baseline", help="checkpoint to compare against in the win-rate (e.g. the SFT model)")
    p.add_argument("--reward-model", help="reward model that judges the win-rate")
    p.add_argument("--judge", help="instead of the reward model: llm:PATH_OR_ID (local chat model) or openai:BASE_URL#MODEL")
    p.add_argument("--tasks", default="winrate,truthfulqa,toxicity", help="comma-separated subset of winrate,truthfulqa,toxicity")
    p.add_argument("--limit", type=int, help="at most this many prompts / questions per task")
    p.add_argument("--data-dir", help="local copies of the public benchmarks (e.g. ../shared/data); default: the Hub")
    p.add_argument("--prompts", default="builders/ppo", help="win-rate prompts: a built PPO folder (its test split) or a file")
    p.add_argument("--out", default="eval_out", help="output folder; rerunning into it resumes from cached generations")
    p.add_argument("--toxicity-k", type=int, default=25, help="continuations per RealToxicityPrompts prompt")
    p.add_argument("--toxicity-scorer", default="default", help="default (offline), hf:PATH_OR_ID or perspective")
    p.add_argument("--max-new-tokens", type=int, default=128, help="reply length cap (replies end at their end-of-turn token)")
    p.add_argument("--temperature", type=float, default=0.7, help="win-rate sampling temperature (pure nucleus, top-p 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling and the bootstrap intervals")
    p.add_argument("--truthfulqa-revision", default="main",
                   help="branch, tag or commit of github.com/sylinrl/TruthfulQA for the judge data (online only)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the Hub (off by default)")
    p.add_argument("--quiet", action="store_true")
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
    if not args.model:
        raise SystemExit("instructkit eval needs --model CKPT")
    from evals.report import headline
    from evals.run import EvalConfig, run_eval

    cfg = EvalConfig(model=args.model, baseline=args.baseline, reward_model=args.reward_model, judge=args.judge,
                     tasks=[t.strip() for t in args.tasks.split(",") if t.strip()], limit=args.limit, data_dir=args.data_dir,
                     out=args.out, prompts=args.prompts, toxicity_k=args.toxicity_k, toxicity_scorer=args.toxicity_scorer,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                     truthfulqa_revision=args.truthfulqa_revision,
                     trust_remote_code=args.trust_remote_code, progress=not args.quiet)
    from builders.errors import InputError, with_flag

    try:
        results = run_eval(cfg)
    except InputError as exc:
        raise with_flag(exc, "--toxicity-scorer") from None
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"instructkit: error: {exc}", file=sys.stderr)
        return 2
    for k, v in headline(results).items():
        print(f"{k:<40} {v}")
    print(f"wrote {args.out}/results.json, report.md and plots")
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
