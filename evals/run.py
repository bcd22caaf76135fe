"""`instructkit eval`: run the chosen tasks on one checkpoint and write results.json, report.md and plots."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from evals.config import TASKS, EvalConfig
from evals.generate import Decoding, Generator

# The TruthfulQA authors' repository, pinned: at commit d71c110 (TRUTHFULQA_COMMIT, config.py) the original
# 817-question release is data/v0/TruthfulQA.csv (the root TruthfulQA.csv is a later 790-question revision, which
# the local judges were not trained for) and the judges' training data is data/finetune_{truth,info}.jsonl. Each file
# is checked for its expected content right after download, before any task runs, and its sha256 goes into
# results.json.
TRUTHFULQA_REPO = "https://raw.githubusercontent.com/sylinrl/TruthfulQA/{revision}/{path}"
TRUTHFULQA_FILES = {"finetune_truth_v0.jsonl": "data/finetune_truth.jsonl", "finetune_info_v0.jsonl": "data/finetune_info.jsonl",
                    "TruthfulQA_v0_original.csv": "data/v0/TruthfulQA.csv"}
PACKAGES = ("instructkit", "torch", "transformers", "lm_eval", "datasets", "numpy", "scikit-learn", "skops",
            "alt-profanity-check", "huggingface-hub")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_files(paths) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in paths}


def scorer_fingerprint(scorer) -> dict:
    """What the toxicity scores came from: the scorer and a hash of its model file(s)."""
    name = scorer.name
    if name == "minilm" or name.startswith("minilm:"):
        from evals.toxicity_head import SHIPPED
        from evals.generate import weights_fingerprint
        from taxonomy.features import minilm_path

        head = Path(name.split(":", 1)[1]) if ":" in name else SHIPPED
        return {"scorer": name, "files": _hash_files([head]), "embedder_weights_sha256": weights_fingerprint(minilm_path())}
    if name == "alt-profanity-check":
        import profanity_check

        return {"scorer": name, "files": _hash_files(sorted((Path(profanity_check.__file__).parent / "data").glob("*.joblib")))}
    if name.startswith("hf:"):
        from evals.generate import weights_fingerprint

        return {"scorer": name, "weights_sha256": weights_fingerprint(scorer.model)}
    return {"scorer": name, "note": "a remote service: no fingerprint of its model is possible"}


def _data_files(cfg: EvalConfig, truthful_data: Path | None, data_dir: Path | None) -> dict:
    """sha256 of every data file the run read, and where each task's data came from."""
    out: dict = {}
    if "winrate" in cfg.tasks:
        src = Path(cfg.prompts)
        files = sorted(f for f in src.rglob("*") if f.is_file()) if src.is_dir() else [src] if src.exists() else []
        out["winrate_prompts"] = {"source": cfg.prompts, "files": _hash_files(files)} if files else {"source": cfg.prompts}
    if "truthfulqa" in cfg.tasks and truthful_data is not None:
        folder = truthful_data / "truthfulqa"
        names = list(TRUTHFULQA_FILES) + (["mc_task_v0.json"] if data_dir else [])
        out["truthfulqa"] = {"source": str(data_dir) if data_dir else TRUTHFULQA_REPO.format(revision=cfg.truthfulqa_revision, path="..."),
                             "files": {n: sha256_file(folder / n) for n in names},
                             "mc": "the files above (mc_task_v0.json)" if data_dir else "lm-eval's truthfulqa_mc1/mc2 (Hub truthfulqa/truthful_qa)"}
    if "toxicity" in cfg.tasks:
        if data_dir:
            folder = data_dir / "realtoxicityprompts_decodingtrust"
            out["toxicity_prompts"] = {"source": str(folder), "files": {n: sha256_file(folder / n) for n in ("toxic.jsonl", "nontoxic.jsonl")}}
        else:
            out["toxicity_prompts"] = {"source": "Hub allenai/real-toxicity-prompts (train split)"}
    return out


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def check_truthfulqa_file(name: str, data: bytes) -> None:
    """Raise ValueError unless `data` is what the file should hold: 817 questions, or judge rows that parse."""
    import csv
    import io

    text = data.decode("utf-8-sig")
    if name.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
        if len(rows) != 817 or "Question" not in rows[0]:
            raise ValueError(f"expected 817 rows with a Question column, got {len(rows)} rows")
        return
    from evals.truthfulqa import parse_finetune

    lines = [ln for ln in text.splitlines() if ln.strip()]
    parsed = parse_finetune(lines)
    if len(lines) < 1000 or len(parsed[0]) < 0.95 * len(lines):
        raise ValueError(f"expected the judge's training rows (prompt 'Q: ...\\nA: ...', completion yes/no), "
                         f"{len(parsed[0])} of {len(lines)} lines parse")


def _need_data(cfg: EvalConfig) -> Path:
    """The TruthfulQA judge data: from --data-dir, else fetched once from the authors' repository and checked."""
    if cfg.data_dir:
        folder = Path(cfg.data_dir) / "truthfulqa"
        missing = [n for n in TRUTHFULQA_FILES if not (folder / n).exists()]
        if missing:
            raise FileNotFoundError(f"{folder}: missing {', '.join(missing)} (TruthfulQA's questions and judge data)")
        return Path(cfg.data_dir)
    import requests

    root = Path(cfg.out) / "cache" / "data"
    for name, path in TRUTHFULQA_FILES.items():
        target = root / "truthfulqa" / name
        if target.exists():
            continue
        url = TRUTHFULQA_REPO.format(revision=cfg.truthfulqa_revision, path=path)
        try:
            resp = requests.get(url, timeout=120)
        except requests.RequestException as exc:
            raise RuntimeError(f"cannot download {url} ({exc}); give --data-dir with truthfulqa/{name} to run offline") from exc
        if resp.status_code != 200:
            raise RuntimeError(f"{url} answered HTTP {resp.status_code}: check --truthfulqa-revision, or give --data-dir")
        try:
            check_truthfulqa_file(name, resp.content)
        except ValueError as exc:
            raise RuntimeError(f"{url} does not hold what {name} should: {exc}") from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(resp.content)
    return root


def run_eval(cfg: EvalConfig) -> dict:
    unknown = set(cfg.tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {', '.join(TASKS)}")
    if "winrate" in cfg.tasks and not cfg.baseline:
        raise ValueError("the winrate task needs --baseline (e.g. the SFT checkpoint)")
    if "winrate" in cfg.tasks and not (cfg.reward_model or cfg.judge):
        raise ValueError("the winrate task needs --reward-model or --judge")
    from builders.checkpoints import resolve_model

    cfg.model, cfg.baseline, cfg.reward_model = (resolve_model(m, progress=cfg.progress) for m in (cfg.model, cfg.baseline, cfg.reward_model))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    # data every task needs is found (or fetched and checked) before any model runs: no error after an hour of MC
    truthful_data = _need_data(cfg) if "truthfulqa" in cfg.tasks else None
    started = time.time()
    decoding = Decoding(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed)
    gen = Generator(cfg.model, cache_dir=cache / "generations", trust_remote_code=cfg.trust_remote_code, progress=cfg.progress)
    data_dir = Path(cfg.data_dir) if cfg.data_dir else None
    metrics: dict = {}
    fingerprints: dict = {"model_weights_sha256": gen.weights}
    if "winrate" in cfg.tasks:
        from evals.winrate import evaluate_winrate, load_prompts, make_judge

        judge = make_judge(cfg.judge or f"rm:{cfg.reward_model}", cfg.trust_remote_code)
        base = Generator(cfg.baseline, cache_dir=cache / "generations", trust_remote_code=cfg.trust_remote_code, progress=cfg.progress)
        fingerprints["baseline_weights_sha256"] = base.weights
        prompts, cats, users, cats_source = load_prompts(cfg.prompts, cfg.limit, seed=cfg.seed)
        metrics["winrate"] = evaluate_winrate(gen, base, judge, prompts, cats, decoding, out, users=users, categories_source=cats_source)
    if "truthfulqa" in cfg.tasks:
        from evals import truth_judge
        from evals.truthfulqa import QUESTIONS_CSV, run_generation, run_mc

        # MC scores the questions the generation task draws (the same limit and seed, matched by their text)
        tq = {"mc": run_mc(cfg.model, data_dir, cache, cfg.limit, cfg.trust_remote_code, seed=cfg.seed,
                           questions_file=truthful_data / "truthfulqa" / QUESTIONS_CSV)}
        fingerprints["truthfulqa_judges"] = truth_judge.fingerprint(truthful_data)
        greedy = Decoding(max_new_tokens=50, temperature=0.0, seed=cfg.seed)
        gen_res = run_generation(gen, truthful_data, cache / "judges", cfg.limit, greedy, cfg.truthfulqa_judge, cfg.progress)
        samples = gen_res.pop("samples")
        (out / "truthfulqa_samples.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
        tq["generation"] = gen_res
        metrics["truthfulqa"] = tq
    if "toxicity" in cfg.tasks:
        from evals.toxicity import make_scorer, pick_prompts, rtp_rows, run_toxicity

        scorer = make_scorer(cfg.toxicity_scorer, cfg.trust_remote_code)
        fingerprints["toxicity_scorer"] = scorer_fingerprint(scorer)
        prompts, groups = pick_prompts(rtp_rows(data_dir), cfg.limit, cfg.seed)
        sampling = Decoding(max_new_tokens=20, temperature=1.0, top_p=0.9, seed=cfg.seed)
        metrics["toxicity"] = run_toxicity(gen, scorer, prompts, cfg.toxicity_k, sampling, groups=groups)
    results = {"config": asdict(cfg), "versions": _versions(), "data": {**_data_files(cfg, truthful_data, data_dir), **fingerprints},
               "seeds": {"decoding": cfg.seed, "bootstrap": cfg.seed, "limit_subset": cfg.seed},
               "decoding": asdict(decoding), "metrics": metrics, "seconds": round(time.time() - started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    from evals.report import write_report

    write_report(results, out)
    return results
