"""The Markdown report and PNG plots of one evaluation, and `eval compare` across runs."""

from __future__ import annotations

import json
from pathlib import Path


def _ci(m: dict) -> str:
    lo, hi = m.get("ci95") or [float("nan"), float("nan")]
    interval = m.get("interval", "wilson").replace("wilson", "Wilson")  # which interval stands in for the bootstrap
    flag = f" (small: {interval})" if m.get("small_sample") else ""
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]{flag}"


def _lc(lc: dict) -> str:
    """The length-controlled win-rate as text: "not fitted" when it is not, "extrapolated" when lengths barely overlap."""
    if lc.get("value") is None:
        return "not fitted"
    text = _ci(lc) if lc.get("ci95") else f"{lc['value']:.3f}"
    return text + (" (extrapolated)" if lc.get("extrapolated") else "")


def _users(v: dict) -> str:
    return "?" if v.get("users") is None else str(v["users"])


MULTIPLE_COMPARISONS = ("Slice intervals are marginal 95% intervals: with ~10 slices about one may exclude its true value by "
                        "chance.")


JUDGE_KINDS = {"tfidf": "TF-IDF + logistic regression",
               "reference": "closeness to the question's reference answers, MiniLM + gradient-boosted trees"}
GROUP_NAMES = {"toxic": "toxic prompts", "nontoxic": "non-toxic prompts", "all": "all prompts"}


def headline(results: dict) -> dict[str, str]:
    """The numbers a user compares across runs, formatted with their intervals."""
    m, row = results["metrics"], {}
    if "winrate" in m:
        w = m["winrate"]
        judge = w.get("judge_label") or w.get("judge", "?").replace("_", " ")  # runs from before judge_label
        row[f"win-rate vs baseline (judge: {judge})"] = _ci(w["overall"])
        row[f"length-controlled win-rate (judge: {judge})"] = _lc(w["length_controlled"])
        if w.get("judge_note"):
            row["win-rate judge note"] = w["judge_note"]
    if "truthfulqa" in m:
        t = m["truthfulqa"]
        row["TruthfulQA MC1"] = _ci(t["mc"]["mc1"])
        row["TruthfulQA MC2"] = _ci(t["mc"]["mc2"])
        g = t["generation"]
        row["% truthful (judged)"] = _ci(g["truthful"])
        row["% truthful and informative (judged)"] = _ci(g["truthful_and_informative"])
        c = g.get("corrected")
        if c and c.get("corrected", True):  # results written before the flag existed were always corrected
            row["% truthful (corrected for judge error)"] = _ci(c["truthful"])
            row["% truthful and informative (corrected)"] = _ci(c["truthful_and_informative"])
        elif c:
            row["% truthful and informative (corrected)"] = f"not corrected: {c['reason']}"
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
        lines += ["", f"## Win-rate by use case (judge: {w.get('judge_label') or w['judge']})", ""]
        if w.get("judge_note"):
            lines += [f"Note: {w['judge_note']}.", ""]
        if w.get("invalid_judgements"):
            order = w.get("invalid_by_order") or {}
            by_order = (f" (unreadable with the model's answer shown first: {order['model_shown_first']}; with the baseline's "
                        f"first: {order['baseline_shown_first']})") if order else ""
            as_ties = (f" Counted as ties instead, the win-rate would be {_ci(w['overall_invalid_as_ties'])}."
                       if w.get("overall_invalid_as_ties") else "")
            lines += [f"{w['invalid_judgements']} of {w['judged'] + w['invalid_judgements']} pairs got no readable verdict "
                      f"(asked twice) and are left out{by_order}.{as_ties}", ""]
        if w["overall"].get("resampled"):
            lines += [f"Intervals resample whole users ({w['overall']['resampled']}): a user's prompts are not independent.", ""]
        lines += [f"Use cases are {w.get('categories', 'predicted by the taxonomy classifier')}: a slice holds the prompts "
                  "assigned to that use case, misclassified ones included.", "",
                  "| use case | prompts / users | win-rate [95%] | wins / ties / losses |", "|---|---|---|---|"]
        lines += [f"| {c} | {v['n']} / {_users(v)} | {_ci(v)} | {v['wins']} / {v['ties']} / {v['losses']} |" for c, v in w["by_category"].items()]
        if any(v.get("small_sample") for v in w["by_category"].values()):
            lines += ["", "(small: Wilson): fewer than 30 prompts, fewer than 10 users or every outcome equal: a bootstrap "
                      "interval would be too narrow, so the interval is Wilson's (over users when they are few), and wide "
                      "for a reason."]
        if any(v.get("users") is None for v in w["by_category"].values()):
            lines += ["", "Users \"?\": the prompts name no user, so each prompt counts as its own user."]
        lines += ["", MULTIPLE_COMPARISONS]
        lc = w["length_controlled"]
        lo, hi = lc.get("log_length_ratio_5_95", [float("nan")] * 2)
        overlap = (f"{lc.get('near_equal_length_share', float('nan')):.0%} of pairs are of about equal length (|log length "
                   f"ratio| < 0.1); the log ratio runs from {lo:.2f} to {hi:.2f} (5-95%).")
        if lc.get("value") is None:
            lc_text = f"The length-controlled win-rate is not fitted ({lc.get('note', '')}); raw {w['overall']['value']:.3f}."
        else:
            lc_text = (f"Length-controlled win-rate {_lc(lc)} (raw {w['overall']['value']:.3f}); the gap is how much of the win "
                       "the length difference explains.")
            if lc.get("extrapolated"):
                lc_text += (" It is extrapolated: under 10% of pairs are near equal length, so the value is the fitted "
                            "curve far from the data and its interval does not show the model-form error.")
            if lc.get("failed_resamples"):
                lc_text += (f" {lc['failed_resamples']} of {lc['resamples']} bootstrap resamples could not be fitted "
                            "(one-sided outcomes) and count as their raw win-rate.")
        lines += ["", f"Length: model answers average {w['mean_length']['model']:.0f} characters, baseline "
                  f"{w['mean_length']['baseline']:.0f}; {overlap} {lc_text}"]
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
                  f"{j['truth']['held_out_accuracy']:.3f} on held-out questions' answers that are not copies of a reference answer "
                  f"(majority {j['truth']['majority_baseline']:.3f}), "
                  f"info judge {j['info']['held_out_accuracy']:.3f} (majority {j['info']['majority_baseline']:.3f})."]
        c = t["generation"].get("corrected")
        if c and c.get("corrected", True):
            lines += ["", "Corrected for the judges' joint truth × info errors, measured on held-out labeled answers that are "
                      "not copies of a reference answer; the intervals include the judges' uncertainty (validation "
                      "questions resampled):", "", "| share | judged | corrected [95%] |", "|---|---|---|"]
            lines += [f"| {k.replace('_', ' ')} | {t['generation'][k]['value']:.3f} | {_ci(c[k])} |"
                      for k in ("truthful", "informative", "truthful_and_informative")]
        elif c:
            lines += ["", f"Not corrected for the judges' errors: {c['reason']}. The judged rates carry the judges' bias."]
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
        lines += [f"| {c} | {_group_name(g, groups)} | {v['prompts']} × {v['k']} | {v['empty']['samples']} ({v['empty']['prompts_all_empty']}) | "
                  f"{_ci(v['expected_max_toxicity'])} | {_ci(v['toxicity_probability'])} | {_ci(v['mean_toxicity'])} |"
                  for c, groups in tx["conditions"].items() for g, v in groups.items()]
        diffs = [(g, pair, d) for g, pairs in tx["differences"].items() for pair, d in pairs.items()]
        if diffs:
            lines += ["", "Conditions against no instruction on the same prompts (paired bootstrap over prompts):", "",
                      "| prompts | difference | n | expected max toxicity [95%] | toxicity probability [95%] |", "|---|---|---|---|---|"]
            lines += [f"| {GROUP_NAMES.get(g, g)} | {pair} | {d['prompts']} | {_ci(d['expected_max_toxicity'])} | "
                      f"{_ci(d['toxicity_probability'])} |" for g, pair, d in diffs]
        conds = list(tx["conditions"])
        groups = plotted_groups(tx)
        fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 3.2), squeeze=False)
        for ax, group in zip(axes[0], groups):
            for i, key in enumerate(("expected_max_toxicity", "toxicity_probability")):
                vals = [tx["conditions"][c][group][key]["value"] for c in conds]
                lo = [v - tx["conditions"][c][group][key]["ci95"][0] for c, v in zip(conds, vals)]
                hi = [tx["conditions"][c][group][key]["ci95"][1] - v for c, v in zip(conds, vals)]
                ax.bar([x + i * 0.4 for x in range(len(conds))], vals, width=0.4, yerr=[lo, hi], capsize=3, label=key.replace("_", " "))
            ax.set_xticks([x + 0.2 for x in range(len(conds))], conds)
            ax.set_ylim(0, 1)
            ax.set_title(GROUP_NAMES.get(group, group), fontsize=9)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "toxicity.png", dpi=120)
        plt.close(fig)
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _group_name(group: str, groups: dict) -> str:
    """A row's prompts; the pooled row says its mix, which the source and --limit set (a limit draws half of each)."""
    if group == "all" and {"toxic", "nontoxic"} <= set(groups):
        return f"all prompts (pooled: {groups['toxic']['prompts']} toxic + {groups['nontoxic']['prompts']} non-toxic)"
    return GROUP_NAMES.get(group, group)


def plotted_groups(tx: dict) -> list[str]:
    """toxicity.png's panels: toxic and non-toxic prompts apart, as the protocol reports them; the pooled numbers
    only when the prompts were not split (their mix depends on the source and --limit, so they compare nothing)."""
    present = set().union(*(set(groups) for groups in tx["conditions"].values()))
    return [g for g in ("toxic", "nontoxic") if g in present] or ["all"]


def _load_run(d: str) -> dict:
    from builders.errors import InputError

    path = Path(d) / "results.json"
    if not Path(d).is_dir():
        raise InputError("no such folder (give `instructkit eval` output folders)", file=d)
    if not path.exists():
        raise InputError("not an `instructkit eval` output folder (no results.json)", file=d)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        headline(results)
    except json.JSONDecodeError as exc:
        raise InputError(f"is not JSON ({exc.msg} at line {exc.lineno})", file=str(path)) from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(f"is not an `instructkit eval` results file (missing or malformed {exc})", file=str(path)) from None
    return results


def _per_prompt(d: str, results: dict) -> dict[str, tuple[dict[str, float], dict[str, str]]]:
    """Per-prompt outcomes a run saved, by headline metric: ({prompt id: outcome}, {prompt id: user})."""
    from builders.errors import InputError

    out: dict = {}
    m = results["metrics"]
    files = []
    if "winrate" in m:
        judge = m["winrate"].get("judge_label") or m["winrate"].get("judge", "?").replace("_", " ")
        files.append(("winrate_samples.jsonl", {f"win-rate vs baseline (judge: {judge})": "outcome"}))
    if "truthfulqa" in m:
        files.append(("truthfulqa_samples.jsonl", {"% truthful (judged)": "truthful",
                                                   "% truthful and informative (judged)": "truthful_and_informative"}))
    for name, metrics in files:
        path = Path(d) / name
        if not path.exists():
            continue
        from evals.winrate import prompt_id

        values: dict = {k: ({}, {}) for k in metrics}
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = row["question"].strip() if "question" in row else (row.get("prompt_id") or prompt_id(row["prompt"]))
                for metric, field in metrics.items():
                    v = (row["truthful"] and row["informative"]) if field == "truthful_and_informative" else row[field]
                    if v is not None:
                        values[metric][0][key] = float(v)
                        if row.get("user") is not None:
                            values[metric][1][key] = str(row["user"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise InputError(f"not a per-prompt outcome row ({exc})", file=str(path), line=line_no) from None
        out.update(values)
    return out


def paired_differences(dirs: list[str], seed: int = 0) -> list[tuple[str, str, dict]]:
    """(metric, run, interval) of run minus the first run on the prompts both scored, for every metric whose
    per-prompt outcomes both runs saved: a paired bootstrap (over users when the prompts name them)."""
    from evals.stats import paired_difference

    runs = [(d, _per_prompt(d, _load_run(d))) for d in dirs]
    base_dir, base = runs[0]
    out = []
    for d, other in runs[1:]:
        for metric, (a, users) in base.items():
            if metric not in other:
                continue
            b = other[metric][0]
            shared = sorted(set(a) & set(b))
            if not shared:
                continue
            groups = [users.get(k) for k in shared]
            groups = groups if all(u is not None for u in groups) else None
            out.append((metric, d, paired_difference([b[k] for k in shared], [a[k] for k in shared], seed=seed, groups=groups)))
    return out


def compare(dirs: list[str]) -> str:
    """A Markdown table with one column per run, then paired differences against the first run on shared prompts."""
    runs = [(d, headline(_load_run(d))) for d in dirs]
    keys = list(dict.fromkeys(k for _, h in runs for k in h))
    lines = ["| metric | " + " | ".join(Path(d).name or d for d, _ in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    lines += ["| " + k + " | " + " | ".join(h.get(k, "–") for _, h in runs) + " |" for k in keys]
    diffs = paired_differences(dirs) if len(dirs) > 1 else []
    if diffs:
        first = Path(dirs[0]).name or dirs[0]
        lines += ["", f"Paired differences against {first} on the prompts both runs scored (paired bootstrap 95%; "
                  "the marginal intervals above overlap more than a paired comparison does):", "",
                  "| metric | run | difference [95%] | shared prompts |", "|---|---|---|---|"]
        lines += [f"| {metric} | {Path(d).name or d} | {v['value']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
                  f"{' (small)' if v.get('small_sample') else ''} | {v['n']} |" for metric, d, v in diffs]
    return "\n".join(lines)
