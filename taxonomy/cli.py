"""`instructkit taxonomy train|review|eval`: train, review with your labelers, or score the use-case classifier."""

from __future__ import annotations

from pathlib import Path

from builders.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("taxonomy", help="train or evaluate the use-case classifier on your own labels")
    tsub = p.add_subparsers(dest="taxonomy_cmd", required=True, metavar="COMMAND")
    t = tsub.add_parser("train", help="train a classifier from CSV/JSONL rows of text,label")
    t.add_argument("--labels", help="CSV/JSONL of text,label (your own labels, or a review file from `taxonomy review`: "
                   "rows still without a label are skipped and counted); the model records its cross-validated accuracy "
                   "on them, which the cards of builds with it report")
    t.add_argument("--default", action="store_true", help="train on the shipped labels: the written set plus the "
                   "hand-labeled real prompts read from --data-dir (this is how the shipped models are made); with "
                   "--labels, on both")
    t.add_argument("--labels-from", metavar="llm:URL[#MODEL]|hf:MODEL", help="distil: label the prompts of --unlabeled with "
                   "this accurate labeler (cached) and train the model on its labels; the model's error-corrected shares "
                   "then take the labeler as the truth")
    t.add_argument("--unlabeled", help="with --labels-from: your prompts, JSONL/Parquet with `text`, `prompt` or `messages`")
    t.add_argument("--data-dir", default="../shared/data", help="public data holding the real prompts' texts (--default)")
    t.add_argument("--features", choices=["fast", "embed", "tuned"], default="fast",
                   help="fast: TF-IDF + structure; embed: also MiniLM sentence embeddings; tuned: MiniLM fine-tuned end "
                   "to end, the most accurate (about 10 minutes on 2 cores for the default set; an 83 MB file). "
                   "embed and tuned need the embed extra")
    t.add_argument("--base", help="with --features tuned: the encoder to fine-tune, a Hugging Face model id or a local "
                   "folder (default: all-MiniLM-L6-v2 from the embed extra; remote code is never run)")
    t.add_argument("--out", required=True, help="model file to write (.skops)")
    t.add_argument("--seed", type=int, default=0, help="seeds the cross-validation folds and the model (default 0)")
    t.set_defaults(func=_cmd_train)
    r = tsub.add_parser("review", help="write the prompts the classifier is least sure of, and a sample of each use case, "
                        "for your labelers (JSONL/CSV with a guide beside it); train --labels takes the file back")
    r.add_argument("--in", dest="inp", required=True, metavar="PATH", help="your prompts: JSONL/Parquet with `text`, "
                   "`prompt` or `messages`, or a folder of them (a built dataset folder such as builders/ppo)")
    r.add_argument("--out", required=True, help="the file to label: .jsonl or .csv (the guide is written beside it as "
                   "NAME.guide.md)")
    r.add_argument("--classifier", "--model", dest="model", help="fast (default), embed or a skops file")
    r.add_argument("--unsure", type=int, default=200, help="how many of the least-sure prompts (default 200)")
    r.add_argument("--sample", type=int, default=100, help="how many more, drawn evenly from each predicted use case, to "
                   "measure the model without the least-sure prompts' bias (default 100)")
    r.add_argument("--seed", type=int, default=0, help="seeds the sample (default 0)")
    r.set_defaults(func=_cmd_review)
    e = tsub.add_parser("eval", help="macro-F1, per-class F1 and confusion matrix on labeled rows")
    e.add_argument("--labels", help="CSV/JSONL of text,label")
    e.add_argument("--heldout", nargs="?", const="oasst", choices=["oasst", "mixed", "shapes", "followups", "large"],
                   help="score a hand-labeled held-out set (texts read from --data-dir): oasst (167 oasst1 prompts, the "
                   "default), mixed (100 HH-RLHF first turns + 100 oasst1 follow-ups), followups (73 follow-up turns of "
                   "the synthetic oasst trees), large (1,458 HH-RLHF helpful first turns, TruthfulQA questions and RTP "
                   "sentence starts, each labeled twice) or shapes (50 written prompts of the shapes Table 1 names + 30 HH-RLHF "
                   "dialogues pasted as transcripts)")
    e.add_argument("--real", action="store_true", help="with --cv K: cross-validate on the hand-labeled real training "
                   "prompts, every fold's model also trained on the written set")
    e.add_argument("--data-dir", default="../shared/data", help="public data holding the real prompts' texts")
    e.add_argument("--classifier", "--model", dest="model", help="fast (default), embed, a skops file, llm:BASE_URL[#MODEL] "
                   "or hf:MODEL[#LABELS.yaml]; with --cv, cross-validate instead")
    e.add_argument("--features", choices=["fast", "embed", "tuned"], default="fast",
                   help="the model kind to cross-validate (--cv; tuned fine-tunes twice per fold)")
    e.add_argument("--cv", type=int, default=0, help="k-fold cross-validation on the labels themselves")
    e.add_argument("--json", help="also write the metrics as JSON here")
    e.set_defaults(func=_cmd_eval)


def _cmd_train(args) -> int:
    from taxonomy.model import UseCaseClassifier, default_training_set, read_label_rows, scores

    if args.labels_from and (args.labels or args.default) or not (args.labels or args.default or args.labels_from):
        raise InputError("give --labels FILE, --default (or both), or --labels-from LABELER --unlabeled FILE", flag="--labels")
    base: tuple[list[str], list[str]] = ([], [])
    if args.labels_from:
        texts, labels = distil_labels(args.labels_from, args.unlabeled)
    else:
        base = default_training_set(args.data_dir) if args.default else ([], [])
        texts, labels = list(base[0]), list(base[1])
    mine = None
    if args.labels:
        mine = read_label_rows(args.labels, skip_unlabeled=True)
        texts, labels = texts + mine[0], labels + mine[1]
    clf = UseCaseClassifier.train(texts, labels, seed=args.seed, name=Path(args.out).stem, features=args.features,
                                  base=args.base)
    if mine:
        from taxonomy.review import accuracy_on_labels

        clf.evaluation = accuracy_on_labels(clf, Path(args.labels).name, base, mine, features=args.features, seed=args.seed)
    clf.save(args.out)
    cv = f"; cross-validated macro-F1 {scores(clf.cv_true, clf.cv_pred)['macro_f1']}" if clf.cv_pred else ""
    print(f"trained on {len(texts)} rows; wrote {args.out}{cv}")
    if mine and mine[2]:
        print(f"skipped {mine[2]} rows of {args.labels} with no label yet")
    if clf.evaluation and "accuracy" in clf.evaluation:
        ev = clf.evaluation
        print(f"on your {ev['rows']} labels: accuracy {ev['accuracy']} [{ev['accuracy_ci'][0]}, {ev['accuracy_ci'][1]}], "
              f"macro-F1 {ev['macro_f1']} ({ev['method']})")
    elif clf.evaluation:
        print(f"not measured on your labels: {clf.evaluation['not_measured']}")
    return 0


def _cmd_review(args) -> int:
    from taxonomy import review
    from taxonomy.model import load_model

    if args.unsure < 0 or args.sample < 0 or args.unsure + args.sample == 0:
        raise InputError("give a positive number of prompts to review", flag="--unsure/--sample")
    texts = distinct_prompts(args.inp)  # a prompt is labeled once
    clf = load_model(args.model)
    if not hasattr(clf, "predict_proba"):
        raise InputError("review needs a model with probabilities: fast, embed or a skops file", flag="--classifier")
    rows = review.select(texts, clf.predict_proba(texts, progress=len(texts) >= 10_000), clf.classes,
                         unsure=args.unsure, sample=args.sample, seed=args.seed)
    guide = review.write(rows, args.out)
    print(f"wrote {len(rows)} of {len(texts)} distinct prompts to {args.out} to label "
          f"({sum(r['why'] == 'least sure' for r in rows)} least sure, the rest a sample of each predicted use case); "
          f"the guide: {guide}. Then: instructkit taxonomy train --labels {args.out} --default --out my_model.skops")
    return 0


def distinct_prompts(path: str) -> list[str]:
    """The prompt texts of a JSONL/Parquet file or a folder of them (`text`, `prompt` or the last user turn of
    `messages`), each once, in order; an empty one is an error naming its file and line."""
    from builders.tablefile import data_files, prompt_texts, read_table

    texts: list[str] = []
    for file, _ in data_files(path):
        texts += prompt_texts(read_table(file, text_columns=("text", "prompt", "messages")), str(file))
    return list(dict.fromkeys(texts))


def distil_labels(labeler_spec: str, unlabeled: str | None) -> tuple[list[str], list[str]]:
    """The prompts of `unlabeled` and the labels an accurate labeler gives them (distinct prompts once each)."""
    import sys

    from taxonomy.labelers import make_labeler

    if not unlabeled:
        raise InputError("--labels-from needs the prompts to label", field="unlabeled")
    if not labeler_spec.startswith(("llm:", "hf:")):
        raise InputError("must be llm:BASE_URL[#MODEL] or hf:MODEL_ID_OR_PATH[#LABELS.yaml]", field="labels_from")
    texts = distinct_prompts(unlabeled)
    if len(texts) < 2:
        raise InputError("needs at least two non-empty prompts", file=unlabeled)
    labeler = make_labeler(labeler_spec)
    labels, _ = labeler.predict(texts, progress=True)
    stats = getattr(labeler, "stats", None)
    if stats:
        print(f"labeled {len(texts)} prompts with {labeler.name}: {stats['asked']} requests, {stats['cached']} from the cache, "
              f"{stats['unreadable']} unreadable (labeled Other), {stats['prompt_tokens']:,} prompt + "
              f"{stats['completion_tokens']:,} completion tokens", file=sys.stderr)
    if len(set(labels)) < 2:
        raise InputError(f"the labeler gave every prompt the same use case ({labels[0]}): nothing to learn", file=unlabeled)
    return texts, labels


def _cmd_eval(args) -> int:
    import json

    from taxonomy.model import LABELED, cv_predict_with_base, evaluate, load_model, read_label_rows, read_labels, scores

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
            texts, labels, skipped = read_label_rows(args.labels, skip_unlabeled=True)
            if skipped:
                print(f"skipped {skipped} rows of {args.labels} with no label yet")
        else:
            raise InputError("give --labels FILE, --heldout or --real", flag="--labels")
        if args.cv > 1:
            res = evaluate(None, texts, labels, cv=args.cv, features=args.features)
        else:
            res = evaluate(load_model(args.model), texts, labels)
    print(res["report"])
    print(f"macro-F1 {res['macro_f1']} on {res['n']} rows")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in res.items() if k != "report"}, indent=2) + "\n")
    return 0
