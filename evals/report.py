"""The Markdown report and PNG plots of one evaluation, and `eval compare` across runs."""

from __future__ import annotations

import json
from pathlib import Path


def _ci(m: dict) -> str:
    lo, hi = m.get("ci95", [float("nan"), float("nan")])
    flag = " (n < 10)" if m.get("small_sample") else ""
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]{flag}"


JUDGE_KINDS = {"tfidf": "TF-IDF + logistic regression",
               "reference": "closeness to the question's reference answers, MiniLM + gradient-boosted trees"}
GROUP_NAMES = {"toxic": "toxic prompts", "nontoxic": "non-toxic prompts", "all": "all prompts"}


def headline(results: dict) -> dict[str, str]:
    """The numbers a user compares across runs, formatted with their intervals."""
    m, row = results["metrics"], {}
    if "winrate" in m:
        row["win-rate vs baseline"] = _ci(m["winrate"]["overall"])
        lc = m["winrate"]["length_controlled"]
        row["length-controlled win-rate"] = _ci(lc) if "ci95" in lc else f"{lc['value']:.3f}"
    if "truthfulqa" in m:
        t = m["truthfulqa"]
        row["TruthfulQA MC1"] = _ci(t["mc"]["mc1"])
        row["TruthfulQA MC2"] = _ci(t["mc"]["mc2"])
        g = t["generation"]
        row["% truthful (judged)"] = _ci(g["truthful"])
        row["% truthful and informative (judged)"] = _ci(g["truthful_and_informative"])
        if "corrected" in g:
            row["% truthful (corrected for judge error)"] = _ci(g["corrected"]["truthful"])
            row["% truthful and informative (corrected)"] = _ci(g["corrected"]["truthful_and_informative"])
    if "toxicity" in m:
        for cond, groups in m["toxicity"]["conditions"].items():
            for group, v in groups.items():
                if group == "all" and len(groups) > 1:
                    continue
                row[f"expected max toxicity ({cond}, {GROUP_NAMES.get(group, group)})"] = _ci(v["expected_max_toxicity"])
                row[f"toxicity probability ({cond}, {GROUP_NAMES.get(group, group)})"] = _ci(v["toxicity_probability"])
    return row


def write_report(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, m = results["config"], results["metrics"]
    lines = [f"# Evaluation of `{cfg['model']}`", "", f"Baseline: `{cfg.get('baseline')}` · tasks: {', '.join(cfg['tasks'])} · "
             f"limit: {cfg.get('limit')} · seed: {cfg['seed']} · {results['seconds']} s", "",
             "| metric | value [95% interval] |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in headline(results).items()]
    if "winrate" in m:
        w = m["winrate"]
        lines += ["", f"## Win-rate by use case (judge: {w['judge']})", ""]
        if w.get("judge_note"):
            lines += [f"Note: {w['judge_note']}.", ""]
        if w.get("invalid_judgements"):
            lines += [f"{w['invalid_judgements']} of {w['judged'] + w['invalid_judgements']} pairs got no readable verdict "
                      "(asked twice) and are left out.", ""]
        if w["overall"].get("resampled"):
            lines += [f"Intervals resample whole users ({w['overall']['resampled']}): a user's prompts are not independent.", ""]
        lines += ["| use case | n | win-rate [95%] | wins / ties / losses |", "|---|---|---|---|"]
        lines += [f"| {c} | {v['n']} | {_ci(v)} | {v['wins']} / {v['ties']} / {v['losses']} |" for c, v in w["by_category"].items()]
        if any(v.get("small_sample") for v in w["by_category"].values()):
            lines += ["", "(n < 10): too few prompts for a bootstrap; the interval is Wilson's, and wide for a reason."]
        lc = w["length_controlled"]
        lines += ["", f"Length: model answers average {w['mean_length']['model']:.0f} characters, baseline "
                  f"{w['mean_length']['baseline']:.0f}. Length-controlled win-rate {lc['value']:.3f} (raw {w['overall']['value']:.3f}); "
                  "the gap is how much of the win the length difference explains."]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        cats = list(w["by_category"])
        vals = [w["by_category"][c]["value"] for c in cats]
        err = [[v - w["by_category"][c]["ci95"][0] for c, v in zip(cats, vals)], [w["by_category"][c]["ci95"][1] - v for c, v in zip(cats, vals)]]
        ax.bar(cats, vals, yerr=err, capsize=3, color="#4C72B0")
        ax.axhline(0.5, color="grey", ls="--", lw=1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("win-rate vs baseline")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        fig.savefig(out / "winrate_by_category.png", dpi=120)
        plt.close(fig)
    if "truthfulqa" in m:
        t = m["truthfulqa"]
        j = t["generation"]["judges"]
        kind = JUDGE_KINDS.get(j["truth"].get("kind", "tfidf"), j["truth"].get("kind"))
        lines += ["", "## TruthfulQA", "", f"Judges ({kind}, trained on the TruthfulQA authors' GPT-judge labels, one per fold of "
                  "questions; each answer is scored by a judge that never saw its question): truth judge accuracy "
                  f"{j['truth']['held_out_accuracy']:.3f} on held-out questions (majority {j['truth']['majority_baseline']:.3f}), "
                  f"info judge {j['info']['held_out_accuracy']:.3f} (majority {j['info']['majority_baseline']:.3f})."]
        if "corrected" in t["generation"]:
            c = t["generation"]["corrected"]
            lines += ["", "Corrected for the judges' measured errors (sensitivity "
                      f"{j['truth'].get('sensitivity', float('nan')):.2f} / specificity {j['truth'].get('specificity', float('nan')):.2f} "
                      "for truth); the intervals include the judges' uncertainty:", "",
                      "| share | judged | corrected [95%] |", "|---|---|---|"]
            lines += [f"| {k.replace('_', ' ')} | {t['generation'][k]['value']:.3f} | {_ci(c[k])} |" for k in c]
        names = ["MC1", "MC2", "truthful", "truthful+informative"]
        ms = [t["mc"]["mc1"], t["mc"]["mc2"], t["generation"]["truthful"], t["generation"]["truthful_and_informative"]]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(names, [x["value"] for x in ms], yerr=[[x["value"] - x["ci95"][0] for x in ms], [x["ci95"][1] - x["value"] for x in ms]],
               capsize=3, color="#55A868")
        ax.set_ylim(0, 1)
        ax.set_ylabel("score")
        fig.tight_layout()
        fig.savefig(out / "truthfulqa.png", dpi=120)
        plt.close(fig)
    if "toxicity" in m:
        from evals.toxicity import EMPTY_NOTE

        tx = m["toxicity"]
        lines += ["", f"## Toxicity (RealToxicityPrompts protocol, scorer {tx['scorer']})", "",
                  "Toxic prompts are those whose own toxicity is at least 0.5; the protocol reports them apart. "
                  f"Scores are the scorer's {tx['scorer_scale']}: {tx['scale_note']}. {EMPTY_NOTE[0].upper() + EMPTY_NOTE[1:]}.", "",
                  "| condition | prompts | prompts × k | empty samples (prompts all empty) | expected max toxicity [95%] | "
                  "toxicity probability [95%] | mean toxicity [95%] |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {c} | {GROUP_NAMES.get(g, g)} | {v['prompts']} × {v['k']} | {v['empty']['samples']} ({v['empty']['prompts_all_empty']}) | "
                  f"{_ci(v['expected_max_toxicity'])} | {_ci(v['toxicity_probability'])} | {_ci(v['mean_toxicity'])} |"
                  for c, groups in tx["conditions"].items() for g, v in groups.items()]
        diffs = [(g, pair, d) for g, pairs in tx["differences"].items() for pair, d in pairs.items()]
        if diffs:
            lines += ["", "Conditions against no instruction on the same prompts (paired bootstrap over prompts):", "",
                      "| prompts | difference | n | expected max toxicity [95%] | toxicity probability [95%] |", "|---|---|---|---|---|"]
            lines += [f"| {GROUP_NAMES.get(g, g)} | {pair} | {d['prompts']} | {_ci(d['expected_max_toxicity'])} | "
                      f"{_ci(d['toxicity_probability'])} |" for g, pair, d in diffs]
        conds = list(tx["conditions"])
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for i, key in enumerate(("expected_max_toxicity", "toxicity_probability")):
            vals = [tx["conditions"][c]["all"][key]["value"] for c in conds]
            lo = [v - tx["conditions"][c]["all"][key]["ci95"][0] for c, v in zip(conds, vals)]
            hi = [tx["conditions"][c]["all"][key]["ci95"][1] - v for c, v in zip(conds, vals)]
            ax.bar([x + i * 0.4 for x in range(len(conds))], vals, width=0.4, yerr=[lo, hi], capsize=3, label=key.replace("_", " "))
        ax.set_xticks([x + 0.2 for x in range(len(conds))], conds)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "toxicity.png", dpi=120)
        plt.close(fig)
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def compare(dirs: list[str]) -> str:
    """A Markdown table with one column per run."""
    runs = []
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.exists():
            raise FileNotFoundError(f"{d}: not an `instructkit eval` output folder (no results.json)")
        runs.append((d, headline(json.loads(path.read_text(encoding="utf-8")))))
    keys = list(dict.fromkeys(k for _, h in runs for k in h))
    lines = ["| metric | " + " | ".join(Path(d).name or d for d, _ in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    lines += ["| " + k + " | " + " | ".join(h.get(k, "–") for _, h in runs) + " |" for k in keys]
    return "\n".join(lines)
