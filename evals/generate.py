"""Generations from any Hugging Face causal LM, cached on disk by model, prompt and decoding settings, so an
interrupted evaluation resumes where it stopped. The model's chat template is used when it has one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 128
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.95
    seed: int = 0

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


class GenerationCache:
    """Append-only JSONL of {key, text}: one file per (model, decoding settings)."""

    def __init__(self, folder: str | Path, model_id: str, decoding: Decoding):
        self.path = Path(folder) / f"{_digest(model_id, decoding.key())}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interruption
                    continue
                self.done[row["key"]] = row["text"]

    def put(self, key: str, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "text": text}, ensure_ascii=False) + "\n")
        self.done[key] = text


class Generator:
    """Wraps a checkpoint (local path or Hub id); `generate(prompts)` returns one text per prompt (and sample)."""

    def __init__(self, model_id: str, *, cache_dir: str | Path | None = None, trust_remote_code: bool = False,
                 batch_size: int = 8, device: str | None = None, progress: bool = True):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_id = model_id
        self.tok = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.tok.padding_side = "left"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=trust_remote_code).to(self.device).eval()
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.progress = progress
        self.calls = 0  # prompts actually run through the model (cache misses)

    def render(self, prompt: str | list[dict], *, chat: bool = True) -> str:
        """Chat prompts go through the chat template when there is one; plain strings are used as they are."""
        if isinstance(prompt, str):
            if not chat or not self.tok.chat_template:
                return prompt
            prompt = [{"role": "user", "content": prompt}]
        if self.tok.chat_template:
            return self.tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return "\n".join(f"{m['role']}: {m['content']}" for m in prompt) + "\nassistant:"

    @torch.no_grad()
    def generate(self, prompts: list, decoding: Decoding, *, n: int = 1, chat: bool = True, desc: str = "generate",
                 on_batch: Callable[[int], None] | None = None) -> list[list[str]]:
        """`n` samples per prompt; cached by (model, decoding, rendered prompt, sample index)."""
        cache = GenerationCache(self.cache_dir, self.model_id, decoding) if self.cache_dir else None
        rendered = [self.render(p, chat=chat) for p in prompts]
        keys = [[_digest(r, str(i)) for i in range(n)] for r in rendered]
        todo = [(pi, si) for pi in range(len(prompts)) for si in range(n) if not (cache and keys[pi][si] in cache.done)]
        out: dict[tuple[int, int], str] = {}
        bar = tqdm(total=len(todo), desc=desc, unit="gen", disable=not self.progress or not todo)
        for b in range(0, len(todo), self.batch_size):
            batch = todo[b : b + self.batch_size]
            torch.manual_seed(decoding.seed + b)
            enc = self.tok([rendered[pi] for pi, _ in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            sample = decoding.temperature > 0
            gen = self.model.generate(**enc, max_new_tokens=decoding.max_new_tokens, do_sample=sample,
                                      temperature=decoding.temperature if sample else None, top_p=decoding.top_p if sample else None,
                                      pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
            texts = self.tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for (pi, si), text in zip(batch, texts):
                out[(pi, si)] = text.strip()
                if cache:
                    cache.put(keys[pi][si], text.strip())
            self.calls += len(batch)
            bar.update(len(batch))
            if on_batch:
                on_batch(self.calls)
        bar.close()
        return [[out.get((pi, si)) if (pi, si) in out else cache.done[keys[pi][si]] for si in range(n)] for pi in range(len(prompts))]
