"""The `instructkit` command. Each package registers its own commands (`register(subparsers)`):

- builders: build, push, pii, classify          - builders.bench: bench generate|run|pii
- taxonomy: taxonomy train|review|eval          - trainers: train sft|rm|ppo|all
- evals: eval, eval compare, score-toxicity

This module only parses, sets up logging and signals, and turns the errors users can fix into one line and exit
status 2 (`-v` adds the traceback); Ctrl-C and SIGTERM exit with 130 after the commands' own cleanup.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

import builders.bench.cli
import builders.cli
import evals.cli
import taxonomy.cli
import trainers.cli
from builders import interrupts
from builders.errors import InputError, PushRefused

PACKAGES = (builders.cli, taxonomy.cli, builders.bench.cli, trainers.cli, evals.cli)
OWN_LOGGERS = ("builders", "taxonomy", "trainers", "evals", "instructkit")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instructkit", description="InstructGPT-style data, training and evals: build "
                                     "the datasets from prompt logs, train SFT → RM → PPO, score any checkpoint.",
                                     epilog="instructkit COMMAND --help shows each command's settings.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage, and print tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for package in PACKAGES:
        package.register(sub)
    return parser


def main(argv: list[str] | None = None, *, program: bool = False) -> int:
    """Run one command; `program` (the `instructkit` program itself) leaves Ctrl-C and SIGTERM ignored when the
    command is done, as the process is ending, instead of restoring the handlers a caller had."""
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:  # our own stages' log; the libraries' INFO (torch prints cache stats at exit) stays off
        for name in OWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handlers = interrupts.install()  # Ctrl-C and SIGTERM stop a command the same way, so its cleanup runs
    try:
        try:
            return args.func(args, rest) if getattr(args, "passes_rest", False) else args.func(args)
        except (InputError, PushRefused) as exc:
            if args.verbose:
                traceback.print_exc()
            print(f"instructkit: error: {exc}", file=sys.stderr)
            return 2
        except BaseException as exc:
            # an error after Ctrl-C is its consequence (a worker it reached broke the pool): the command was interrupted
            if isinstance(exc, KeyboardInterrupt) or interrupts.arrived():
                return _interrupted(args.verbose and not isinstance(exc, KeyboardInterrupt))
            raise
    except KeyboardInterrupt:  # the signal's handler ran only while an error above was being handled
        return _interrupted(False)
    finally:
        if program:
            # Python's teardown resets a signal whose handler is a Python function to the default action, which kills
            # the process: a late Ctrl-C (seen in CI after "interrupted" was printed) turned status 130 into a death
            # by SIGINT. Ignored from here, it cannot; the handlers go straight from ours to ignored, with no window.
            interrupts.ignore()
        else:
            interrupts.restore(handlers)


def console() -> int:
    """The `instructkit` program: `main`, and a Ctrl-C that lands after it restored the handlers (or before it set
    them) exits with 130 too, never with Python's death by SIGINT and a traceback."""
    try:
        return main(program=True)
    except KeyboardInterrupt:
        return _interrupted(False)


def _interrupted(show_error: bool) -> int:
    # the stages' and the build's `finally` blocks have removed temporary folders and spills by now
    if show_error:
        traceback.print_exc()
    print("instructkit: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(console())
