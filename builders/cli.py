"""The `instructkit` command: build, push, pii, classify, taxonomy, train, eval, score-toxicity."""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from builders.errors import InputError, PushRefused


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="build the SFT / RM / PPO dataset folders from prompt logs and labeler data")
    p.add_argument("--source", action="append", dest="sources", metavar="SPEC",
                   help="sample | oasst:ID_OR_PATH | hh-rlhf:ID_OR_PATH | jsonl:PATH | parquet:PATH (repeatable; default: sample)")
    p.add_argument("--out", help="output folder (default: builders)")
    p.add_argument("--config", help="YAML file of settings (keys as these flags)")
    p.add_argument("--seed", type=int)
    p.add_argument("--on-error", choices=["fail", "skip"], help="malformed records: stop (default) or drop and report")
    p.add_argument("--cap-per-user", type=int, help="prompts kept per user (default 200)")
    p.add_argument("--pii-mode", choices=["redact", "drop"],
                   help="redact: typed placeholders such as <PERSON> (default); drop: remove records with personal data")
    p.add_argument("--pii-scope", choices=["all", "train"], help="`train` reproduces the paper; `all` is safe to publish")
    p.add_argument("--pii-names", choices=["all", "personal"],
                   help="all: redact every person's name (default); personal: keep public figures' names with no personal cue")
    p.add_argument("--classifier", help="use-case classifier: fast (default), embed (more accurate, slower) or a skops "
                   "file (e.g. a tuned model from `taxonomy train --features tuned`)")
    p.add_argument("--engine", choices=["local", "ray"], help="where per-row work runs (default local; output is the same)")
    p.add_argument("--workers", type=int, help="worker processes or local Ray CPUs (default: every core)")
    p.add_argument("--ray-address", help="join a running Ray cluster (auto, ray://HOST:10001) instead of starting one")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_build)


def _cmd_build(args) -> int:
    from builders.pipeline import build
    from builders.settings import BuildSettings

    overrides = {"sources": args.sources, "out": args.out, "seed": args.seed, "on_error": args.on_error,
                 "cap_per_user": args.cap_per_user, "pii_mode": args.pii_mode, "pii_scope": args.pii_scope,
                 "pii_names": args.pii_names,
                 "engine": args.engine, "workers": args.workers, "ray_address": args.ray_address,
                 "classifier": args.classifier}
    given = {k for k, v in overrides.items() if v is not None}
    flags = {k: "--source" if k == "sources" else "--" + k.replace("_", "-") for k in given}
    with _naming(flags, args.config):
        if args.config:
            settings = BuildSettings.from_yaml(args.config, **overrides)
        else:
            settings = BuildSettings(**{k: v for k, v in overrides.items() if v is not None})
        report = build(settings, progress=not args.quiet)
    _print_summary(report, settings.out)
    return 0


@contextmanager
def _naming(flags: dict[str, str], config: str | None = None):
    """An error about a setting names where the user set it: its command-line flag, else the config file."""
    try:
        yield
    except InputError as err:
        if err.file is None and err.flag is None and err.field:
            if err.field in flags:
                raise InputError(err.reason, flag=flags[err.field], detail=err.detail) from None
            if config:
                raise InputError(err.reason, file=config, field=err.field, detail=err.detail) from None
        raise


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
    p.add_argument("--private", action="store_true")
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
    p.add_argument("--in", dest="inp", required=True,
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

    check_output(args.inp, args.out)
    files = data_files(args.inp)
    scanner = PiiScanner(names=args.names)
    rows_in = rows_hit = 0
    entities: Counter = Counter()
    for path, rel in files:
        df = read_table(path)
        cols = text_columns(df, args.column, str(path))
        if any("." in c for c in cols):
            raise InputError("pii scans whole columns (strings, lists or chat messages): name a top-level column", flag="--column")
        rows = df.to_dicts()
        spots = [(i, col, pos, text) for i, row in enumerate(rows) for col in cols
                 for pos, text in texts_of(row.get(col), str(path), i + 1, col)]
        found = scanner.scan([text for *_, text in spots])
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


def _add_classify(sub) -> None:
    p = sub.add_parser("classify", help="add `category` and `category_score` (Table 1 use cases) to a file of prompts")
    p.add_argument("--in", dest="inp", required=True,
                   help="JSONL or Parquet with `text`, `prompt` or `messages`, or a folder of them (e.g. builders/ppo)")
    p.add_argument("--out", required=True, help="output file (.jsonl or .parquet), or a new folder for a folder input")
    p.add_argument("--model", help="`fast` (default), `embed` (shipped, more accurate, needs the embed extra) or a "
                   "skops file from `instructkit taxonomy train`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_classify)


def _cmd_classify(args) -> int:
    import polars as pl

    from builders.tablefile import check_output, copy_other_files, data_files, prompt_texts, read_table, write_table
    from taxonomy.model import load_model

    check_output(args.inp, args.out)
    files = data_files(args.inp)
    with _naming({"classifier": "--model"}):
        clf = load_model(args.model)
    n = 0
    for path, rel in files:
        df = read_table(path, text_columns=("text", "prompt", "messages"))
        labels, scores = clf.predict(prompt_texts(df, str(path)), progress=not args.quiet)
        df = df.with_columns(pl.Series("category", labels, dtype=pl.String), pl.Series("category_score", scores, dtype=pl.Float64))
        write_table(df, Path(args.out) / rel if Path(args.inp).is_dir() else args.out)
        n += df.height
    copy_other_files(args.inp, args.out, columns_changed=True)
    print(f"classified {n} prompts; wrote {args.out}", file=sys.stderr)
    return 0


def _add_taxonomy(sub) -> None:
    p = sub.add_parser("taxonomy", help="train or evaluate the use-case classifier on your own labels")
    tsub = p.add_subparsers(dest="taxonomy_cmd", required=True)
    t = tsub.add_parser("train", help="train a classifier from CSV/JSONL rows of text,label")
    t.add_argument("--labels", help="CSV/JSONL of text,label (your own labels)")
    t.add_argument("--default", action="store_true", help="train on the shipped labels instead: the written set plus "
                   "the hand-labeled real prompts read from --data-dir (this is how the shipped models are made)")
    t.add_argument("--data-dir", default="../shared/data", help="public data holding the real prompts' texts (--default)")
    t.add_argument("--features", choices=["fast", "embed", "tuned"], default="fast",
                   help="fast: TF-IDF + structure; embed: also MiniLM sentence embeddings; tuned: MiniLM fine-tuned end "
                   "to end, the most accurate (about 10 minutes on 2 cores for the default set; a ~90 MB file). "
                   "embed and tuned need the embed extra")
    t.add_argument("--base", help="with --features tuned: the encoder to fine-tune, a Hugging Face model id or a local "
                   "folder (default: all-MiniLM-L6-v2 from the embed extra; remote code is never run)")
    t.add_argument("--out", required=True, help="model file to write (.skops)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_cmd_taxonomy_train)
    e = tsub.add_parser("eval", help="macro-F1, per-class F1 and confusion matrix on labeled rows")
    e.add_argument("--labels", help="CSV/JSONL of text,label")
    e.add_argument("--heldout", nargs="?", const="oasst", choices=["oasst", "mixed"],
                   help="score a hand-labeled held-out set of real prompts (texts read from --data-dir): oasst (167 "
                   "oasst1 prompts, the default) or mixed (100 HH-RLHF first turns + 100 oasst1 follow-ups)")
    e.add_argument("--real", action="store_true", help="with --cv K: cross-validate on the hand-labeled real training "
                   "prompts, every fold's model also trained on the written set")
    e.add_argument("--data-dir", default="../shared/data", help="public data holding the real prompts' texts")
    e.add_argument("--model", help="fast (default), embed, or a skops file; with --cv, cross-validate instead")
    e.add_argument("--features", choices=["fast", "embed", "tuned"], default="fast",
                   help="the model kind to cross-validate (--cv; tuned fine-tunes twice per fold)")
    e.add_argument("--cv", type=int, default=0, help="k-fold cross-validation on the labels themselves")
    e.add_argument("--json", help="also write the metrics as JSON here")
    e.set_defaults(func=_cmd_taxonomy_eval)


def _cmd_taxonomy_train(args) -> int:
    from taxonomy.model import UseCaseClassifier, default_training_set, read_labels, scores

    if bool(args.labels) == bool(args.default):
        raise InputError("give exactly one of --labels FILE or --default", field="labels")
    texts, labels = default_training_set(args.data_dir) if args.default else read_labels(args.labels)
    clf = UseCaseClassifier.train(texts, labels, seed=args.seed, name=Path(args.out).stem, features=args.features,
                                  base=args.base)
    clf.save(args.out)
    cv = f"; cross-validated macro-F1 {scores(clf.cv_true, clf.cv_pred)['macro_f1']}" if clf.cv_pred else ""
    print(f"trained on {len(texts)} rows; wrote {args.out}{cv}")
    return 0


def _cmd_taxonomy_eval(args) -> int:
    import json

    from taxonomy.model import LABELED, cv_predict_with_base, evaluate, load_model, read_labels, scores

    if args.real:
        if args.cv < 2:
            raise InputError("--real cross-validates: give --cv K (K >= 2)", field="cv")
        from taxonomy.heldout import load_real_labeled

        texts, labels = load_real_labeled(args.data_dir)
        res = scores(labels, cv_predict_with_base(read_labels(LABELED), texts, labels, args.cv, features=args.features))
    else:
        if args.heldout:
            from taxonomy.heldout import load_heldout

            texts, labels = load_heldout(args.data_dir, args.heldout)
        elif args.labels:
            texts, labels = read_labels(args.labels)
        else:
            raise InputError("give --labels FILE, --heldout or --real", field="labels")
        if args.cv > 1:
            res = evaluate(None, texts, labels, cv=args.cv, features=args.features)
        else:
            res = evaluate(load_model(args.model), texts, labels)
    print(res["report"])
    print(f"macro-F1 {res['macro_f1']} on {res['n']} rows")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in res.items() if k != "report"}, indent=2) + "\n")
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the prompt pipeline on generated logs against the anchors")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    g = bsub.add_parser("generate", help="write a deterministic synthetic prompt log with known duplicates and PII")
    g.add_argument("--n", type=int, required=True, help="prompts")
    g.add_argument("--out", required=True, help="output folder (canonical-schema Parquet; a name ending .jsonl gives JSONL)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--data-dir", help="real public text to build from (default: ../shared/data when it exists; "
                   "without it, the embedded sample and the taxonomy's labeled prompts)")
    g.add_argument("--dup-rate", type=float, default=0.15, help="share of rows that re-submit an earlier prompt")
    g.add_argument("--pii-rate", type=float, default=0.05, help="share of new prompts given one personal value")
    g.set_defaults(func=_cmd_bench_generate)
    r = bsub.add_parser("run", help="per-stage speed and memory, and dedup/PII quality against the anchors")
    r.add_argument("--sizes", default="100000,1000000", help="comma-separated prompt counts (default 100000,1000000)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--work", default="bench-work", help="folder for generated logs and outputs (default: bench-work)")
    r.add_argument("--data-dir", help="real public text to build from (default: ../shared/data when it exists)")
    r.add_argument("--workers", type=int, help="pipeline worker processes (default: every core)")
    r.add_argument("--pii-sample", type=int, default=2000, help="distinct prompts both PII scanners read (default 2000)")
    r.add_argument("--anchor-dedup-limit", type=int, default=1_000_000,
                   help="the datasketch loop reads at most this many earliest prompts (default 1,000,000)")
    r.add_argument("--build-only-sizes", default="",
                   help="comma-separated prompt counts measured as the whole build only (`instructkit build`), without "
                        "the anchors and recall, which hold every row in memory: for 10M")
    r.add_argument("--out", help="write the tables as this Markdown file's `run` section (other sections are kept; the raw "
                   "numbers go beside it as .json)")
    r.set_defaults(func=_cmd_bench_run)
    q = bsub.add_parser("pii", help="PII leaks per entity type, over-redaction and speed, instructkit beside presidio's "
                        "default analyzer on data this project did not write (~3 min)")
    q.add_argument("--data-dir", help="folder with pii_presidio_research/, truthfulqa/ and (for speed) oasst1/hh_rlhf "
                   "(default: ../shared/data)")
    q.add_argument("--n", type=int, default=1200, help="texts of the Faker probe (default 1200)")
    q.add_argument("--seed", type=int, default=0, help="seed of the Faker probe and the real-prompt sample")
    q.add_argument("--out", help="write the tables as this Markdown file's `pii` section (other sections are kept; the "
                   "raw numbers go to a .pii.json beside it)")
    q.add_argument("--check", action="store_true",
                   help="exit 1 unless zero e-mail/card/SSN/IP/IBAN leaks and no type worse than presidio on (a) and (b)")
    q.set_defaults(func=_cmd_bench_pii)


def _data_dir(arg: str | None) -> Path | None:
    """A folder given on the command line must exist; the default is used only where it does."""
    if arg is None:
        default = Path("../shared/data")
        return default if default.is_dir() else None
    if not Path(arg).is_dir():
        raise InputError("no such folder", file=arg, flag="--data-dir")
    return Path(arg)


def _cmd_bench_generate(args) -> int:
    from builders.bench.generate import GenSettings, generate, write

    tables = generate(GenSettings(n=args.n, seed=args.seed, dup_rate=args.dup_rate, pii_rate=args.pii_rate), _data_dir(args.data_dir))
    paths = write(tables, Path(args.out))
    truth = tables["truth"]
    print(f"wrote {args.n:,} prompts, {tables['demonstrations'].num_rows:,} demonstrations and {tables['rankings'].num_rows:,} "
          f"rankings to {args.out} ({args.n - truth['dup_of'].null_count:,} injected duplicates, "
          f"{args.n - truth['pii_value'].null_count:,} prompts with injected personal data); truth in {paths['truth']}")
    return 0


def _cmd_bench_pii(args) -> int:
    from builders.bench.doc import write_section
    from builders.bench.pii import check, markdown, run

    data_dir = _data_dir(args.data_dir)
    if data_dir is None:
        raise InputError("no data folder: pass --data-dir with pii_presidio_research/ and truthfulqa/", field="data-dir")
    command = "instructkit bench pii " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "instructkit bench pii"
    result = run(data_dir, n=args.n, seed=args.seed)
    text = markdown(result, command)
    print(text)
    if args.out:
        out = Path(args.out)
        write_section(out, "pii", text)
        out.with_suffix(".pii.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    failures = check(result)
    for f in failures:
        print(f"bench pii: {f}", file=sys.stderr)
    return 1 if failures and args.check else 0


def _cmd_bench_run(args) -> int:
    from builders.bench.run import run

    def counts(value: str, name: str) -> list[int]:
        try:
            return [int(x.replace("_", "")) for x in value.split(",") if x.strip()]
        except ValueError:
            raise InputError("must be comma-separated integers", flag=f"--{name}", detail=f"got {value!r}") from None

    sizes, build_only = counts(args.sizes, "sizes"), counts(args.build_only_sizes, "build-only-sizes")
    command = "instructkit bench run " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "instructkit bench run"
    run(sizes, build_only=build_only, seed=args.seed, work=Path(args.work), data_dir=_data_dir(args.data_dir), workers=args.workers,
        pii_sample=args.pii_sample, anchor_dedup_limit=args.anchor_dedup_limit, out=Path(args.out) if args.out else None,
        command=command)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="instructkit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_build, _add_push, _add_pii, _add_classify, _add_taxonomy, _add_bench):
        add(sub)
    try:
        from trainers.cli import add_train
    except ImportError:  # the train extra is not installed
        add_train = None
    if add_train:
        add_train(sub)
    try:
        from evals.cli import add_eval
    except ImportError:  # the eval extra is not installed
        add_eval = None
    if add_eval:
        add_eval(sub)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    terminate = _stop_on_sigterm()
    try:
        return args.func(args, rest) if args.command == "train" else args.func(args)
    except KeyboardInterrupt:
        # the stages' and the build's `finally` blocks have removed temporary folders and spills by now
        print("instructkit: interrupted", file=sys.stderr)
        return 130
    except (InputError, PushRefused) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"instructkit: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if terminate is not None:
            signal.signal(signal.SIGTERM, terminate)


def _stop_on_sigterm():
    """SIGTERM (`kill`, `timeout`, a scheduler) stops a command the way Ctrl-C does, so its cleanup runs; returns
    the previous handler (None outside the main thread, where handlers cannot be set)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
