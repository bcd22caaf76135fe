"""Preference win-rate of a model against a baseline on held-out prompts: the paper's human preference evaluation,
with an automatic judge standing in for the labelers (a reward model judge is not a human one: see RM_JUDGE_NOTE).

Both models answer the same prompts with the same decoding settings and seed. A judge compares each pair:
- `RewardModelJudge`: a reward model (sequence classifier); the higher reward wins, equal rewards tie;
- `LocalLLMJudge`: any local Hugging Face chat model, asked which answer is better (next-token A vs B);
- `OpenAIJudge`: an OpenAI-compatible chat endpoint (key from $OPENAI_API_KEY, never logged).
LLM judges are asked in both orders; a verdict that flips with the order is a tie, which cancels position bias. A
reply that names neither answer is asked again once; if it still names neither, the pair is left out of the
win-rate and counted (`invalid_judgements`), never read as a vote.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from builders.errors import InputError
from evals.stats import length_controlled, sample_indices, win_rate

JUDGE_TEMPLATE = (
    "You are comparing two assistant responses to the same user request. Pick the one that follows the request "
    "better: helpful, truthful, harmless, and respecting every explicit constraint.\n\n"
    "[Request]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Answer with one letter: A or B."
)
RETRY_NOTE = "\n\nYour previous reply named neither response. Reply with exactly one character: A or B."
# "A", "**B**", "Response A", "The answer is B.", "(A)": one letter standing alone, the only one in the reply
_VERDICT = re.compile(r"(?<![A-Za-z])([AB])(?![A-Za-z])")
RM_JUDGE_NOTE = ("the judge is a reward model: if it is the one the policy was optimised against, the win-rate is biased "
                 "towards the policy (it learned to please this judge); prefer a held-out judge (--judge llm:... or openai:...)")
JUDGE_LABELS = {"reward_model": "reward model", "local_llm": "local LLM", "openai_compatible": "OpenAI-compatible LLM"}
NO_CATEGORY = "(no use case)"  # a prompt whose category is missing: a slice of its own, never a crash


def prompt_id(prompt) -> str:
    """A prompt's stable id (a hash of its text): how two runs' outcomes on the same prompt are paired."""
    return hashlib.sha256(json.dumps(prompt, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def parse_verdict(reply: str | None) -> str | None:
    """"A" or "B" when the reply names exactly one of them, else None (unreadable)."""
    found = set(_VERDICT.findall((reply or "").strip()))
    return found.pop() if len(found) == 1 else None


def _flatten(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


class RewardModelJudge:
    name = "reward_model"

    def __init__(self, model_id: str, trust_remote_code: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=1, trust_remote_code=trust_remote_code).eval()
        self.model.config.pad_token_id = self.tok.pad_token_id

    def rewards(self, prompts: list, answers: list[str]) -> np.ndarray:
        from evals.reward import score  # the same scoring the trainers use: chat template, completion last

        convs = [(p if isinstance(p, list) else [{"role": "user", "content": p}]) + [{"role": "assistant", "content": a}]
                 for p, a in zip(prompts, answers)]
        return score(self.model, self.tok, convs).numpy()

    def outcomes(self, prompts, model_answers, base_answers) -> list[float]:
        rm, rb = self.rewards(prompts, model_answers), self.rewards(prompts, base_answers)
        return [0.5 if abs(a - b) < 1e-6 else float(a > b) for a, b in zip(rm, rb)]


class _PairwiseJudge(ABC):
    """Shared by LLM judges: `prefer(prompt, a, b)` returns "A", "B" or None (unreadable); both orders are asked."""

    @abstractmethod
    def prefer(self, prompt, a: str, b: str) -> str | None:
        """"A" or "B": the better response when shown in this order; None when the judge's reply names neither."""

    def outcomes(self, prompts, model_answers, base_answers) -> list[float | None]:
        """1 model wins, 0 baseline wins, 0.5 tie (the verdict flips with the order), None unreadable. Which order
        left a verdict unreadable is counted in `unreadable_by_order`: a judge that refuses when one model's answer
        comes first (an unsafe answer, say) leaves out pairs that are not missing at random."""
        out = []
        self.unreadable_by_order = {"model_shown_first": 0, "baseline_shown_first": 0}
        for p, m, b in zip(prompts, model_answers, base_answers):
            first, second = self.prefer(p, m, b), self.prefer(p, b, m)
            self.unreadable_by_order["model_shown_first"] += first is None
            self.unreadable_by_order["baseline_shown_first"] += second is None
            if first is None or second is None:
                out.append(None)
            else:
                out.append(1.0 if (first, second) == ("A", "B") else 0.0 if (first, second) == ("B", "A") else 0.5)
        return out


class LocalLLMJudge(_PairwiseJudge):
    name = "local_llm"

    def __init__(self, model_id: str, trust_remote_code: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=trust_remote_code).eval()
        self.ids = verdict_token_ids(self.tok, model_id)

    @torch.no_grad()
    def prefer(self, prompt, a: str, b: str) -> str | None:
        """The letter whose tokens (with or without a leading space) the model finds likelier next; None on an exact
        tie, never a default towards A."""
        msg = [{"role": "user", "content": JUDGE_TEMPLATE.format(prompt=_flatten(prompt), a=a, b=b)}]
        text = self.tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True) if self.tok.chat_template else msg[0]["content"] + "\n"
        enc = self.tok(text, return_tensors="pt", add_special_tokens=False)
        logprobs = torch.log_softmax(self.model(**enc).logits[0, -1].float(), dim=-1)
        score = {c: torch.logsumexp(logprobs[ids], dim=0).item() for c, ids in self.ids.items()}
        return None if score["A"] == score["B"] else max(score, key=score.get)


def verdict_token_ids(tok, model_id: str = "") -> dict[str, list[int]]:
    """The single tokens that spell each verdict ("A" and " A"; "B" and " B"). A letter no single token spells, or a
    token both letters share, would make the comparison meaningless: an error naming the judge."""
    ids: dict[str, list[int]] = {}
    for c in ("A", "B"):
        ids[c] = sorted({t[0] for t in (tok.encode(v, add_special_tokens=False) for v in (c, " " + c)) if len(t) == 1})
    if not ids["A"] or not ids["B"] or set(ids["A"]) & set(ids["B"]):
        raise InputError(f"its tokenizer does not spell \"A\" and \"B\" as distinct single tokens (A: {ids['A']}, B: "
                         f"{ids['B']}), so a verdict cannot be read from the next token: use openai:URL#MODEL",
                         field="judge", detail=model_id)
    return ids


class OpenAIJudge(_PairwiseJudge):
    name = "openai_compatible"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY"):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.key = os.environ.get(api_key_env, "")

    def _ask(self, content: str) -> str:
        from taxonomy.labelers import chat_completion

        reply = chat_completion(self.url, self.model, [{"role": "user", "content": content}], key=self.key)
        return reply["choices"][0]["message"].get("content") or ""

    def prefer(self, prompt, a: str, b: str) -> str | None:
        question = JUDGE_TEMPLATE.format(prompt=_flatten(prompt), a=a, b=b)
        verdict = parse_verdict(self._ask(question))
        return verdict if verdict is not None else parse_verdict(self._ask(question + RETRY_NOTE))


def make_judge(spec: str, trust_remote_code: bool = False):
    """`rm:PATH_OR_ID`, `llm:PATH_OR_ID` (local chat model) or `openai:BASE_URL#MODEL`."""
    kind, _, arg = spec.partition(":")
    if kind == "rm":
        return RewardModelJudge(arg, trust_remote_code)
    if kind == "llm":
        return LocalLLMJudge(arg, trust_remote_code)
    if kind == "openai":
        url, _, model = arg.rpartition("#")
        return OpenAIJudge(url, model)
    raise ValueError(f"unknown judge {spec!r}: use rm:PATH, llm:PATH or openai:URL#MODEL")


def load_prompts(source: str, limit: int | None, classifier=None, seed: int = 0) -> tuple[list, list[str], list[str] | None, str]:
    """Prompts, their use cases, their users and where the use cases came from: the test split of a built PPO
    folder (users never seen in training; use cases predicted by the taxonomy classifier at build time), or a
    JSONL/Parquet file with `prompt`, `messages` or `text` (use cases from a `category` column, else predicted now;
    users from a `user` or `user_id` column when there is one). `limit` draws a random subset seeded by `seed`."""
    path = Path(source)
    if path.is_dir() or not path.suffix:
        from datasets import load_dataset

        ds = load_dataset(source, split="test")
        prompts, cats = list(ds["prompt"]), list(ds["category"]) if "category" in ds.column_names else None
        users = list(ds["user"]) if "user" in ds.column_names else None
        source_of_cats = "predicted by the taxonomy classifier (at build time)"
    else:
        from builders.tablefile import read_table

        df = read_table(source, text_columns=("prompt", "messages", "text"))
        rows = df.to_dicts()
        prompts = [r.get("prompt") or r.get("messages") or r.get("text") for r in rows]
        cats = [r["category"] for r in rows] if "category" in df.columns else None
        user_col = next((c for c in ("user", "user_id") if c in df.columns), None)
        users = [str(r[user_col]) for r in rows] if user_col else None
        source_of_cats = "from the prompts file's category column"
    keep = sample_indices(len(prompts), limit, seed)
    prompts, cats, users = [prompts[i] for i in keep], ([cats[i] for i in keep] if cats else None), ([users[i] for i in keep] if users else None)
    if cats is None:
        from taxonomy import load_default

        texts = [p if isinstance(p, str) else next((m["content"] for m in reversed(p) if m["role"] == "user"), "") for p in prompts]
        cats, _ = (classifier or load_default()).predict(texts)
        source_of_cats = "predicted by the taxonomy classifier"
    return prompts, cats, users, source_of_cats


def evaluate_winrate(model_gen, base_gen, judge, prompts: list, categories: list[str | None], decoding, out_dir: Path | None = None,
                     users: list[str] | None = None, categories_source: str = "predicted by the taxonomy classifier") -> dict:
    """Win-rate with 95% intervals that resample users (a user's prompts are not independent) when users are known,
    overall, by use case (each slice with its prompts and users; Wilson's interval where a bootstrap cannot be
    trusted, flagged `small_sample`) and at equal length (with how far the lengths overlap). Each prompt's outcome
    goes to winrate_samples.jsonl with the prompt's id, so `eval compare` can pair two runs."""
    categories = [NO_CATEGORY if c is None else str(c) for c in categories]
    model_answers = [s[0] for s in model_gen.generate(prompts, decoding, desc="win-rate: model")]
    base_answers = [s[0] for s in base_gen.generate(prompts, decoding, desc="win-rate: baseline")]
    outcomes = judge.outcomes(prompts, model_answers, base_answers)
    valid = [i for i, o in enumerate(outcomes) if o is not None]
    o = [outcomes[i] for i in valid]
    g = [users[i] for i in valid] if users else None
    cats = [categories[i] for i in valid]
    result = {
        "judge": judge.name, "judge_label": JUDGE_LABELS.get(judge.name, judge.name), "categories": categories_source,
        "judged": len(valid), "invalid_judgements": len(outcomes) - len(valid),
        "invalid_by_order": getattr(judge, "unreadable_by_order", None),
        "overall": win_rate(o, seed=decoding.seed, groups=g),
        "by_category": {c: win_rate([x for x, k in zip(o, cats) if k == c], seed=decoding.seed,
                                    groups=[u for u, k in zip(g, cats) if k == c] if g else None)
                        for c in sorted(set(cats))},
        "length_controlled": length_controlled(o, [len(model_answers[i]) for i in valid], [len(base_answers[i]) for i in valid],
                                               seed=decoding.seed, groups=g),
        "mean_length": {"model": float(np.mean([len(a) for a in model_answers])), "baseline": float(np.mean([len(a) for a in base_answers]))},
        "truncated_answers": {"model": getattr(model_gen, "truncated", None), "baseline": getattr(base_gen, "truncated", None)},
    }
    if len(valid) < len(outcomes):  # how far the left-out pairs could move it: each counted as a tie instead
        result["overall_invalid_as_ties"] = win_rate([0.5 if x is None else x for x in outcomes], seed=decoding.seed, groups=users)
    if isinstance(judge, RewardModelJudge):
        result["judge_note"] = RM_JUDGE_NOTE
    if out_dir:
        with open(Path(out_dir) / "winrate_samples.jsonl", "w", encoding="utf-8") as fh:
            for i, (p, c, m, b, o) in enumerate(zip(prompts, categories, model_answers, base_answers, outcomes)):
                fh.write(json.dumps({"prompt_id": prompt_id(p), "user": users[i] if users else None, "prompt": p, "category": c,
                                     "model": m, "baseline": b, "outcome": o}, ensure_ascii=False) + "\n")
    return result
