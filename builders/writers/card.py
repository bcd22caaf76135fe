"""Dataset cards (README.md with YAML `configs`, `dataset_info`, licence), generated from the build report only."""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from taxonomy.categories import CATEGORIES

DESCRIPTION = {
    "sft": "Labeler demonstrations for supervised fine-tuning: one row per demonstration, as `messages` and as "
           "conversational `prompt`/`completion` (TRL's SFTTrainer takes either).",
    "rm": "Reward-model comparisons. Default config: every K-way ranking expanded into its C(K,2) pairs "
          "(`prompt`, `chosen`, `rejected` in TRL's conversational format; ties give no pair; `group` is shared by "
          "all pairs of one ranking so they can be trained as one batch element, as in the paper). Config "
          "`rankings`: the K-way rankings themselves (rank 0 is best).",
    "ppo": "Prompts for reinforcement learning (PPO/GRPO/RLOO): prompts only, no labels.",
}
TASKS = {"sft": ["text-generation"], "rm": ["text-classification"], "ppo": ["text-generation"]}


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _body(name: str, report: dict) -> str:
    stages = [[s["name"], s["in"], s["out"], ", ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "–"] for s in report["stages"]]
    t6 = [[r["dataset"], r["split"], r["labeler"], r["api"]] for r in report["table6"]]
    uc = report["use_cases"]
    adj = uc.get("api_prompts_adjusted")
    use = [[c, f"{uc['paper_table1'][c]:.1%}", f"{uc['api_prompts'][c]['share']:.1%}", uc["api_prompts"][c]["count"]]
           + ([f"{adj[c]['share']:.1%} [{adj[c]['ci95'][0]:.1%}, {adj[c]['ci95'][1]:.1%}]"] if adj else [])
           + [f"{uc['all_prompts'][c]['share']:.1%}"] for c in CATEGORIES]
    use_header = (["use case", "paper (API)", "this build (API)", "API prompts"]
                  + (["API, error-corrected [95%]"] if adj else []) + ["this build (all)"])
    sizes = report["datasets"][name]
    size_rows = [[cfg, sp, n] for cfg, splits in sizes.items() for sp, n in splits.items()]
    pii = report["privacy"]["pii"]
    settings = report["settings"]
    from builders.sources import public_spec

    src = ", ".join(f"`{public_spec(s['spec'])}`" for s in report["sources"])  # never a local path
    folder = name
    splits = list(sizes["default"])
    pii_line = ", ".join(f"{sp} {pii[sp]}" for sp in splits) or "no split"
    return f"""# instructkit {name} dataset

{DESCRIPTION[name]}

Built by [instructkit](https://pypi.org/project/instructkit/) from {src} with seed {settings['seed']}, following
the prompt pipeline of InstructGPT (Ouyang et al., 2022): prefix dedup → at most {settings['cap_per_user']} prompts
per user → train / validation / test split by user (no user in two splits) → PII {settings['pii_mode']} → use-case
classification.

{LOCAL_USAGE}

```python
from datasets import load_dataset
ds = {usage_line(folder)}{', "rankings"' if name == "rm" else ''})
```

## Sizes

{_table(["config", "split", "rows"], size_rows)}

## Pipeline (prompts in, out, and why the rest were dropped)

{_table(["stage", "in", "out", "dropped"], stages)}

## Splits by prompt source (the layout of the paper's Table 6)

Rows: SFT demonstrations, RM comparisons, PPO prompts.

{_table(["dataset", "split", "labeler-written", "customer (API)"], t6)}

## Use cases beside the paper's Table 1

{_use_case_text(uc)}

{_table(use_header, use)}

## Privacy

- User ids are pseudonymised with a keyed hash (HMAC-SHA256); the key is never published.
- PII ({settings['pii_mode']}): {pii_line}. Redacted spans read
  `<EMAIL_ADDRESS>`, `<PHONE_NUMBER>`, `<PERSON>`, ... Names: {_names_line(report['privacy'].get('pii_names', 'all'))}
- Personal data found, by type: {_found_line(report['privacy'].get('pii_found', {}))}.

{_rankings_section(report) if name == "rm" else ""}## Licence

{report['license']}

## Citation

The pipeline follows InstructGPT:

```bibtex
@article{{ouyang2022training,
  title={{Training language models to follow instructions with human feedback}},
  author={{Ouyang, Long and Wu, Jeff and Jiang, Xu and Almeida, Diogo and Wainwright, Carroll L. and Mishkin, Pamela and
          Zhang, Chong and Agarwal, Sandhini and Slama, Katarina and Ray, Alex and others}},
  journal={{arXiv preprint arXiv:2203.02155}},
  year={{2022}}
}}
```
"""


# the usage lines as built (the same card whatever --out is: builds are byte-identical) and as pushed (`push` swaps
# them for the Hub repository's id)
LOCAL_USAGE = "From the build's output folder (`--out`, default `builders`):"
HUB_USAGE = "From the Hugging Face Hub:"


def usage_line(folder: str) -> str:
    return f'load_dataset("{folder}"'


def _rankings_section(report: dict) -> str:
    r = report.get("rankings")
    if not r:
        return ""
    by_k = ", ".join(f"K={k}: {n:,}" for k, n in r["by_k"].items()) or "none"
    return (f"""## Rankings and comparisons

- Rankings by number of completions: {by_k} ({r['rankings']:,} in all).
- Comparisons: {r['pairs']:,} ({r['pairs_per_ranking']} per ranking); {r['tied_pairs_skipped']:,} pairs a labeler ranked equal
  give no comparison and are skipped.

""")


def size_category(rows: int) -> str:
    """The Hub's size_categories bucket of a row count."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if rows < limit:
            return label
    return "n>1B"


def _use_case_text(uc: dict) -> str:
    """What the use-case table's shares are, and why they are or are not corrected for the classifier's errors."""
    head = "Shares of classified prompts, by the classifier's own labels"
    if "api_prompts_adjusted" in uc:
        head += ("; for API prompts also the shares corrected for its errors on held-out labeled prompts (maximum "
                 "likelihood over the confusion matrix, bootstrap intervals over the prompts and the calibration pairs)")
    note = f"\n\nError correction: {uc['adjusted_note']}" if "adjusted_note" in uc else ""
    return f"{head}. {_accuracy_line(uc.get('classifier_on_your_labels'))}{note}"


def _accuracy_line(ev: dict | None) -> str:
    """The classifier's accuracy on the build owner's own labels, when it was trained with them."""
    if not ev:
        return "See `taxonomy/` for its accuracy."
    if "accuracy" not in ev:
        return f"It was trained with {ev['rows']:,} of your own labels (`{ev['labels']}`), not measured on them: {ev['not_measured']}."
    lo, hi = ev["accuracy_ci"]
    return (f"On {ev['rows']:,} prompts your labelers labeled (`{ev['labels']}`) it gives the same use case on "
            f"{ev['accuracy']:.1%} [{lo:.1%}, {hi:.1%}] (macro-F1 {ev['macro_f1']}; {ev['method']}).")


def _names_line(mode: str) -> str:
    if mode == "all":
        return "every person's name found is redacted."
    return "names with no personal cue nearby (public figures) are kept; every other name is redacted."


def _found_line(found: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(found.items())) or "none"


def write_card(folder: Path, name: str, configs: dict[str, tuple[Features, str, dict]], report: dict) -> None:
    """configs: config name -> (Features, data folder, split -> {num_examples, num_bytes})."""
    rows = sum(info["num_examples"] for info in configs["default"][2].values())
    data = DatasetCardData(license=report["license"], task_categories=TASKS[name], language=["en"],
                           tags=["instructkit", "rlhf", "instructgpt"], pretty_name=f"instructkit {name}",
                           size_categories=[size_category(rows)])
    meta = MetadataConfigs()
    infos = DatasetInfosDict()
    for cfg, (features, subdir, splits) in configs.items():
        entry = {"data_files": [{"split": sp, "path": f"{subdir}/{sp}-*"} for sp in splits]}
        if cfg == "default":
            entry["default"] = True
        meta[cfg] = entry
        split_dict = SplitDict()
        for sp, info in splits.items():
            split_dict.add(SplitInfo(name=sp, num_examples=info["num_examples"], num_bytes=info["num_bytes"]))
        infos[cfg] = DatasetInfo(features=features, splits=split_dict)
    meta.to_dataset_card_data(data)
    infos.to_dataset_card_data(data)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{_body(name, report)}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(str(card), encoding="utf-8")
