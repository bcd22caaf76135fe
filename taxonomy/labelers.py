"""Accurate use-case labelers for users who have them, behind the same flag as the shipped models:

- `llm:BASE_URL[#MODEL]`: any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, TGI, Ollama, OpenAI) asked
  with Table 1's rubric (definitions, tie-breaks, one example per use case) to name each prompt's use case. Requests
  run concurrently, retried with back-off on connection errors, 429 and 5xx; every answer is cached on disk by the
  hash of the endpoint, model, rubric and prompt, so a rerun or an interrupted run asks nothing twice; tokens are
  counted from the endpoint's `usage`. The key comes from $OPENAI_API_KEY and never reaches logs or files.
- `hf:MODEL_ID_OR_PATH[#LABELS.yaml]`: any Hugging Face text classifier, its labels mapped to Table 1 by a YAML file
  (`model label: Table 1 use case`; `#FILE`, else `table1_labels.yaml` in the model folder; none needed when the
  model's labels are Table 1's names). Probabilities of labels mapped to the same use case add up.

Both answer like the shipped classifiers (`predict(texts) -> (labels, scores)`) and run in the build's own process.
They carry no cross-validated errors, so the build reports their raw shares (the labeler is taken as the truth);
`instructkit taxonomy train --labels-from llm:…|hf:…` distils one into a fast model that has them.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builders.errors import InputError
from taxonomy.categories import CATEGORIES, DEFINITIONS, TIE_BREAKS

RUBRIC_VERSION = 1
EXAMPLES = {  # one short example per use case, written for this rubric
    "Generation": "Write a short poem about the sea.",
    "Open QA": "Who was the first person to walk on the Moon?",
    "Brainstorming": "Give me five ideas for a team-building activity.",
    "Chat": "User: hi, how are you?\nAssistant: Great, thanks! And you?\nUser: a bit tired honestly",
    "Rewrite": "Make this sentence more formal: gonna be late, sorry.",
    "Summarization": "Summarize this article in two sentences: <article text>",
    "Classification": "Is this review positive or negative? \"The battery died after a week.\"",
    "Other": "asdf ok",
    "Closed QA": "Based on the passage below, when did the war end? <passage>",
    "Extract": "List all the email addresses in this text: <text>",
}


def rubric() -> str:
    lines = ["You label user prompts with the use case they ask for, from this list (the InstructGPT paper's Table 1):", ""]
    lines += [f"- {c}: {DEFINITIONS[c]}" for c in CATEGORIES]
    lines += ["", "Tie-breaks:"] + [f"- {t}" for t in TIE_BREAKS]
    lines += ["", "Examples:"] + [f"Prompt: {json.dumps(EXAMPLES[c])}\nUse case: {c}" for c in CATEGORIES]
    lines += ["", "Answer with the name of exactly one use case from the list and nothing else."]
    return "\n".join(lines)


def parse_label(reply: str) -> str | None:
    """The Table 1 use case a reply names (the earliest one named; case and punctuation ignored), or None."""
    low = (reply or "").lower()
    found = [(low.find(c.lower()), -len(c), c) for c in CATEGORIES if c.lower() in low]
    return min(found)[2] if found else None


def chat_completion(url: str, model: str, messages: list[dict], *, key: str = "", max_tokens: int = 8, retries: int = 4,
                    timeout: float = 120, backoff: float = 1.0) -> dict:
    """One chat completion from an OpenAI-compatible endpoint (`url` ends in /chat/completions), retried with
    exponential back-off on connection errors, HTTP 429 and 5xx; other statuses are errors at once."""
    import requests

    body = {"model": model, "temperature": 0, "max_tokens": max_tokens, "messages": messages}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for attempt in range(retries + 1):
        try:
            resp = requests.post(url, json=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            if attempt == retries:
                raise RuntimeError(f"{url}: no answer after {retries + 1} tries ({type(exc).__name__})") from None
        else:
            if resp.status_code == 200:
                return resp.json()
            if resp.status_code != 429 and resp.status_code < 500 or attempt == retries:
                raise RuntimeError(f"{url} answered HTTP {resp.status_code}")
        time.sleep(backoff * 2 ** attempt)
    raise AssertionError("unreachable")


class _Labeler:
    classes = CATEGORIES
    cv_true = cv_pred = None
    in_process = True  # in the build's process: one answer cache / one model, not one per forked worker

    def shares(self, predicted, seed: int = 0):
        return None  # the labeler is the truth: no measured errors to correct for


class LLMLabeler(_Labeler):
    def __init__(self, spec: str, cache_dir: Path | None = None, workers: int = 8, retries: int = 4, backoff: float = 1.0):
        base, _, model = spec.partition("#")
        if not base.startswith(("http://", "https://")):
            raise InputError(f"llm:{spec}: give the endpoint's base URL, e.g. llm:http://localhost:8000/v1#MODEL", field="classifier")
        self.base, self.url = base.rstrip("/"), base.rstrip("/") + "/chat/completions"
        self.key = os.environ.get("OPENAI_API_KEY", "")
        self.model = model or self._first_model()
        self.name = f"llm:{self.base}#{self.model}"
        self.workers, self.retries, self.backoff = workers, retries, backoff
        self.system = rubric()
        from builders.checkpoints import cache_root

        key = hashlib.sha256(f"{self.base}\n{self.model}\n{RUBRIC_VERSION}\n{self.system}".encode()).hexdigest()[:16]
        self.cache_file = Path(cache_dir or cache_root("labels")) / f"llm-{key}.jsonl"
        self.cache = self._read_cache()
        self.stats = {"asked": 0, "cached": 0, "unreadable": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()

    def _first_model(self) -> str:
        import requests

        try:
            resp = requests.get(self.base + "/models", headers={"Authorization": f"Bearer {self.key}"} if self.key else {}, timeout=30)
            return resp.json()["data"][0]["id"]
        except Exception:  # noqa: BLE001 - any failure means the same to the user
            raise InputError(f"llm:{self.base}: name the model (llm:{self.base}#MODEL); {self.base}/models did not list one",
                             field="classifier") from None

    def _read_cache(self) -> dict[str, str]:
        out = {}
        if self.cache_file.exists():
            for line in self.cache_file.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    out[row["h"]] = row["label"]
                except (ValueError, KeyError):
                    continue  # a line cut short by an interrupt: asked again
        return out

    @staticmethod
    def _hash(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _ask(self, text: str) -> str:
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": f"Prompt: {json.dumps(text[:4000])}\nUse case:"}]
        label = None
        for attempt in range(2):
            reply = chat_completion(self.url, self.model, messages, key=self.key, retries=self.retries, backoff=self.backoff)
            usage = reply.get("usage") or {}
            with self._lock:
                self.stats["asked"] += 1
                self.stats["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                self.stats["completion_tokens"] += int(usage.get("completion_tokens") or 0)
            label = parse_label((reply.get("choices") or [{}])[0].get("message", {}).get("content") or "")
            if label:
                break
            messages = messages + [{"role": "user", "content": "Answer with one use case name from the list only."}]
        if label is None:
            with self._lock:
                self.stats["unreadable"] += 1
            return "Other"  # counted in stats["unreadable"], never cached: asked again on the next run
        with self._lock:
            self.cache[self._hash(text)] = label
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.cache_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"h": self._hash(text), "label": label}) + "\n")
        return label

    def predict(self, texts: list[str], progress: bool = False) -> tuple[list[str], list[float]]:
        from tqdm.auto import tqdm

        labels: list[str | None] = [self.cache.get(self._hash(t)) for t in texts]
        self.stats["cached"] += sum(lab is not None for lab in labels)
        todo = sorted({t for t, lab in zip(texts, labels) if lab is None})
        if todo:
            with ThreadPoolExecutor(self.workers) as pool, tqdm(total=len(todo), desc=f"label ({self.model})", unit="prompt",
                                                                 disable=not progress) as bar:
                answers = {}
                for text, label in zip(todo, pool.map(self._ask, todo)):
                    answers[text] = label
                    bar.update(1)
            labels = [lab if lab is not None else answers[t] for t, lab in zip(texts, labels)]
        return [str(lab) for lab in labels], [1.0] * len(texts)


class HFLabeler(_Labeler):
    def __init__(self, spec: str, batch_size: int = 32, trust_remote_code: bool = False):
        import torch
        import yaml

        from builders.checkpoints import load_text_classifier

        model_id, _, map_file = spec.partition("#")
        self.name = f"hf:{spec}"
        self.tok, self.model = load_text_classifier(model_id, trust_remote_code=trust_remote_code, field="classifier")
        id2label = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        path = Path(map_file) if map_file else Path(model_id) / "table1_labels.yaml"
        if path.exists():
            mapping = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(mapping, dict):
                raise InputError("must map each of the model's labels to a Table 1 use case", file=str(path))
            where = str(path)
        elif map_file:
            raise InputError("label map not found", file=map_file, field="classifier")
        else:
            by_name = {c.lower(): c for c in CATEGORIES}
            mapping = {lab: by_name.get(lab.lower()) for lab in id2label.values()}
            where = f"hf:{model_id} (no table1_labels.yaml)"
        missing = [lab for lab in id2label.values() if lab not in mapping]
        wrong = {k: v for k, v in mapping.items() if v not in CATEGORIES}
        if missing or wrong:
            raise InputError(f"map every model label to a Table 1 use case ({', '.join(CATEGORIES)}): "
                             + (f"unmapped {missing}" if missing else f"not use cases {wrong}"), file=where)
        self.target = [CATEGORIES.index(mapping[id2label[i]]) for i in range(len(id2label))]
        self.batch_size, self.torch = batch_size, torch

    def predict(self, texts: list[str], progress: bool = False) -> tuple[list[str], list[float]]:
        import numpy as np
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), len(CATEGORIES)))
        with self.torch.inference_mode():
            for i in tqdm(range(0, len(texts), self.batch_size), desc="label", unit="batch", disable=not progress):
                enc = self.tok(texts[i:i + self.batch_size], return_tensors="pt", padding=True, truncation=True, max_length=512)
                probs = self.model(**enc).logits.float().softmax(-1).numpy()
                for j, t in enumerate(self.target):
                    out[i:i + len(probs), t] += probs[:, j]
        best = out.argmax(1) if len(texts) else np.zeros(0, dtype=int)
        return [CATEGORIES[b] for b in best], [round(float(out[k, b]), 4) for k, b in enumerate(best)]


def make_labeler(spec: str):
    """`llm:BASE_URL[#MODEL]` or `hf:MODEL_ID_OR_PATH[#LABELS.yaml]`."""
    if spec.startswith("llm:"):
        return LLMLabeler(spec[4:])
    if spec.startswith("hf:"):
        return HFLabeler(spec[3:])
    raise InputError(f"unknown labeler {spec!r}: llm:BASE_URL[#MODEL] or hf:MODEL_ID_OR_PATH[#LABELS.yaml]", field="classifier")
