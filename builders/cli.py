"""The builders' commands: `instructkit build`, `push`, `pii` and `classify` (registered by `instructkit.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path

from builders.errors import InputError, naming


def register(sub) -> None:
    """build, push, pii and classify."""
    for add in (_add_build, _add_push, _add_pii, _add_classify):
        add(sub)


def _add_build(sub) -> None:
    from builders.flags import add_flags
    from builders.settings import BuildSettings

    p = sub.add_parser("build", help="build the SFT / RM / PPO dataset folders from prompt logs and labeler data",
                       description="Sources → validate → MinHash prefix dedup → cap per user → user-disjoint splits → "
                                   "PII removal → use-case classification → sft/, rm/, ppo/ and build_report.json. Every "
                                   "setting is a flag and a key of --config (flags win).")
    p.add_argument("--config", help="YAML file of settings; its keys are these flags' names (dashes or underscores)")
    add_flags(p, BuildSettings)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_build)


def _cmd_build(args) -> int:
    from builders.flags import flag_names, given
    from builders.settings import BuildSettings

    overrides = given(args, BuildSettings)
    flags = {k: v for k, v in flag_names(BuildSettings).items() if k in overrides}
    with naming(flags, args.config):
        settings = BuildSettings.from_yaml(args.config, **overrides) if args.config else BuildSettings(**overrides)
        from builders.pipeline import build  # polars, the stages: only once the settings are known to be good

        report = build(settings, progress=not args.quiet)
    _print_summary(report, settings.out)
    return 0


def _print_summary(report: dict, out: str) -> None:
    print(f"\n{'stage':<15}{'in':>9}{'out':>9}  dropped")
    for s in report["stages"]:
        dropped = ", ".join(f"{k}={v}" for k, v in s["dropped"].items()) or "-"
        print(f"{s['name']:<15}{s['in']:>9}{s['out']:>9}  {dropped}")
    print()
    for name, cfgs in report["datasets"].items():
        for cfg, splits in cfgs.items():
            sizes = "  ".join(f"{sp}={n}" for sp, n in splits.items())
            label = name if cfg == "default" else f"{name}[{cfg}]"
            print(f"{label:<15}{sizes}")
    acc = report["accounting"]
    print(f"\naccounted for: {acc['prompts']['validated']} prompts, {acc['demonstrations']['validated']} demonstrations, "
          f"{acc['rankings']['validated']} rankings; {report['dropped_count']} records dropped with reasons")
    print(f"wrote {Path(out) / 'sft'}, {Path(out) / 'rm'}, {Path(out) / 'ppo'} and {Path(out) / 'build_report.json'}")


def _add_push(sub) -> None:
    p = sub.add_parser("push", help="upload a built dataset folder to the Hugging Face Hub")
    p.add_argument("name", help="sft, rm, ppo, or a path to a dataset folder")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    p.add_argument("--private", action="store_true", help="create the dataset repository as private (an existing one keeps its visibility)")
    p.add_argument("--revision", help="branch to push to (created if missing)")
    p.add_argument("--out", default="builders", help="folder that holds the built datasets (default: builders)")
    p.set_defaults(func=_cmd_push)


def _cmd_push(args) -> int:
    from builders.writers.push import push

    folder = Path(args.name) if Path(args.name).is_dir() and args.name not in ("sft", "rm", "ppo") else Path(args.out) / args.name
    url = push(folder, args.repo_id, private=args.private, revision=args.revision)
    print(f"pushed {folder} to {url}")
    return 0


def _add_pii(sub) -> None:
    p = sub.add_parser("pii", help="redact or drop personal data in the text columns of a JSONL/Parquet file or a folder of them "
                                   "(a built dataset folder such as builders/sft)")
    p.add_argument("--in", dest="inp", required=True, metavar="PATH",
                   help="a .jsonl(.gz) or .parquet file, or a folder of them (every file below it is read)")
    p.add_argument("--out", required=True, help="output file (.jsonl or .parquet), or a new folder for a folder input; never the input")
    p.add_argument("--mode", choices=["redact", "drop"], default="redact",
                   help="redact: typed placeholders such as <PHONE_NUMBER> (default); drop: remove rows with personal data")
    p.add_argument("--names", choices=["all", "personal"], default="all",
                   help="all: redact every person's name (default); personal: keep public figures' names with no personal cue")
    p.add_argument("--column", action="append", metavar="NAME",
                   help="a column to scan (repeatable); default: every text column found (text, prompt, messages, completion, "
                        "completions, chosen, rejected, ...), strings, lists of strings and chat messages alike")
    p.set_defaults(func=_cmd_pii)


def _cmd_pii(args) -> int:
    from collections import Counter

    import polars as pl

    from builders.stages.pii import PiiScanner, redact
    from builders.tablefile import (check_output, copy_other_files, data_files, put, read_table, text_columns, texts_of,
                                    write_table)

    from builders.engine import LocalEngine

    check_output(args.inp, args.out)
    files = data_files(args.inp)
    scanner = PiiScanner(names=args.names)
    engine = LocalEngine(workers=1, progress=True)  # in this process, with a progress bar
    rows_in = rows_hit = 0
    entities: Counter = Counter()
    for path, rel in files:
        df = read_table(path, absent=True)
        cols = text_columns(df, args.column, str(path))
        if any("." in c for c in cols):
            raise InputError("pii scans whole columns (strings, lists or chat messages): name a top-level column", flag="--column")
        rows = df.to_dicts()
        spots = [(i, col, pos, text) for i, row in enumerate(rows) for col in cols
                 for pos, text in texts_of(row.get(col), str(path), i + 1, col)]
        found = scanner.scan([text for *_, text in spots], engine=engine)
        hit = set()
        for (i, col, pos, text), fs in zip(spots, found):
            if fs:
                hit.add(i)
                entities.update(f.entity for f in fs)
                rows[i][col] = put(rows[i][col], pos, redact(text, fs))
        if args.mode == "drop":
            rows = [r for i, r in enumerate(rows) if i not in hit]
        rows_in, rows_hit = rows_in + len(df), rows_hit + len(hit)
        write_table(pl.DataFrame(rows, schema=df.schema) if rows else df.clear(), Path(args.out) / rel if Path(args.inp).is_dir() else args.out)
    copy_other_files(args.inp, args.out)
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(entities.items())) or "none"
    print(f"{rows_hit:,} of {rows_in:,} rows held personal data ({args.mode}: {kinds}); wrote {args.out}", file=sys.stderr)
    return 0


CLASSIFIER_HELP = ("`fast` (default), `embed` (shipped, MiniLM, needs the embed extra), a skops file from `instructkit "
                   "taxonomy train`, `llm:BASE_URL[#MODEL]` (an OpenAI-compatible endpoint with Table 1's rubric; key "
                   "from $OPENAI_API_KEY) or `hf:MODEL_ID_OR_PATH[#LABELS.yaml]` (a Hugging Face text classifier, its "
                   "labels mapped to Table 1)")


def _add_classify(sub) -> None:
    p = sub.add_parser("classify", help="add `category` and `category_score` (Table 1 use cases) to a file of prompts")
    p.add_argument("--in", dest="inp", required=True, metavar="PATH",
                   help="JSONL or Parquet with `text`, `prompt` or `messages`, or a folder of them (e.g. builders/ppo)")
    p.add_argument("--out", required=True, help="output file (.jsonl or .parquet), or a new folder for a folder input")
    p.add_argument("--classifier", "--model", dest="model", help=CLASSIFIER_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_classify)


def _cmd_classify(args) -> int:
    import polars as pl

    from builders.tablefile import check_output, copy_other_files, data_files, prompt_texts, read_table, write_table
    from taxonomy.model import load_model

    check_output(args.inp, args.out)
    files = data_files(args.inp)
    with naming({"classifier": "--classifier"}):
        clf = load_model(args.model)
    n = 0
    for path, rel in files:
        df = read_table(path, text_columns=("text", "prompt", "messages"), absent=True)
        labels, scores = clf.predict(prompt_texts(df, str(path)), progress=not args.quiet)
        df = df.with_columns(pl.Series("category", labels, dtype=pl.String), pl.Series("category_score", scores, dtype=pl.Float64))
        write_table(df, Path(args.out) / rel if Path(args.inp).is_dir() else args.out)
        n += df.height
    copy_other_files(args.inp, args.out, columns_changed=True)
    print(f"classified {n} prompts; wrote {args.out}", file=sys.stderr)
    return 0

