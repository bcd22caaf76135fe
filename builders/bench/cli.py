"""`instructkit bench generate|run|pii`: synthetic logs, the pipeline's speed and quality beside the anchors, and
PII recall on public data this project did not write."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from builders.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the prompt pipeline on generated logs against the anchors")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    g = bsub.add_parser("generate", help="write a deterministic synthetic prompt log with known duplicates and PII")
    g.add_argument("--n", type=int, required=True, help="prompts")
    g.add_argument("--out", required=True, help="output folder (canonical-schema Parquet; a name ending .jsonl gives JSONL)")
    g.add_argument("--seed", type=int, default=0, help="same seed, same log, byte for byte (default 0)")
    g.add_argument("--data-dir", help="real public text to build from (default: ../shared/data when it exists; "
                   "without it, the embedded sample and the taxonomy's labeled prompts)")
    g.add_argument("--dup-rate", type=float, default=0.15, help="share of rows that re-submit an earlier prompt")
    g.add_argument("--pii-rate", type=float, default=0.05, help="share of new prompts given one personal value")
    g.set_defaults(func=_cmd_generate)
    r = bsub.add_parser("run", help="per-stage speed and memory, and dedup/PII quality against the anchors")
    r.add_argument("--sizes", default="100000,1000000", help="comma-separated prompt counts (default 100000,1000000)")
    r.add_argument("--seed", type=int, default=0, help="seeds the generated logs and the builds (default 0)")
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
    r.set_defaults(func=_cmd_run)
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
    q.set_defaults(func=_cmd_pii)


def _data_dir(arg: str | None) -> Path | None:
    """A folder given on the command line must exist; the default is used only where it does."""
    if arg is None:
        default = Path("../shared/data")
        return default if default.is_dir() else None
    if not Path(arg).is_dir():
        raise InputError("no such folder", file=arg, flag="--data-dir")
    return Path(arg)


def _cmd_generate(args) -> int:
    from builders.bench.generate import GenSettings, generate

    c = generate(GenSettings(n=args.n, seed=args.seed, dup_rate=args.dup_rate, pii_rate=args.pii_rate), _data_dir(args.data_dir),
                 Path(args.out))
    print(f"wrote {c['prompts']:,} prompts, {c['demonstrations']:,} demonstrations and {c['rankings']:,} rankings to {args.out} "
          f"({c['injected_duplicates']:,} injected duplicates, {c['injected_pii']:,} prompts with injected personal data); "
          f"truth in {c['paths']['truth']}")
    return 0


def _cmd_pii(args) -> int:
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


def _cmd_run(args) -> int:
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
