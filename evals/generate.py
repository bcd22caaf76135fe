"""Generations from any Hugging Face causal LM, cached on disk by the model's weights (a hash of them, not its path:
a checkpoint retrained into the same folder is not served old answers), prompt and decoding settings, so an
interrupted evaluation resumes where it stopped. The model's chat template is used when it has one."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

# letters only: templates that `trim` the content (Llama-3, Gemma) would strip whitespace or control characters
_MARK = "ENDOFTURNPROBE"


def stop_token_ids(tok, model=None) -> list[int]:
    """Every token that ends a reply: the tokenizer's EOS, the checkpoint's generation EOS ids, and the special token
    the chat template writes after an assistant message (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, ...), so a
    chat model stops at the end of its turn instead of inventing the next one."""
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
    if tok.chat_template:
        text = tok.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARK}], tokenize=False)
        tail = text.split(_MARK, 1)[1] if _MARK in text else ""
        tail_ids = tok(tail, add_special_tokens=False)["input_ids"] if tail else []
        special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
        if tail_ids and tail_ids[0] in special:
            ids.add(tail_ids[0])
    return sorted(i for i in ids if i is not None)


def sampling_config(*, max_new_tokens: int, temperature: float, top_p: float, stop_ids: list[int], pad_id: int):
    """A complete generation config: pure nucleus sampling (no top-k, no penalties, no min-p), or greedy when
    temperature is 0. Used with `checkpoint_defaults_off`, nothing of a checkpoint's generation_config.json
    (repetition_penalty, top_k, min_p, ...) reaches the sampler."""
    from transformers import GenerationConfig

    sample = temperature > 0
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else 1.0,
                            top_p=top_p if sample else 1.0, top_k=0, typical_p=1.0, repetition_penalty=1.0,
                            no_repeat_ngram_size=0, min_new_tokens=0, eos_token_id=stop_ids, pad_token_id=pad_id)


@contextmanager
def checkpoint_defaults_off(model):
    """transformers fills every field a passed config leaves unset from the model's own generation_config; while
    this is active the model's config is transformers' plain defaults, so only the values we pass count."""
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield model
    finally:
        model.generation_config = saved


def cut_at_stop(ids: list[int], stop_ids: list[int]) -> tuple[list[int], bool]:
    """The reply up to (not including) its first stop token, and whether it had one (False: cut by the length cap)."""
    stops = set(stop_ids)
    for k, t in enumerate(ids):
        if t in stops:
            return ids[:k], True
    return ids, False


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 128
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.95
    seed: int = 0

    def key(self) -> str:
        # the sampler's version: generations cached before sampling became pure nucleus with end-of-turn stops
        # (instructkit 0.1 added transformers' top_k=50) are not reused
        return json.dumps({**asdict(self), "sampler": 2}, sort_keys=True)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def weights_fingerprint(model_or_path, memo: str | Path | None = None) -> str:
    """sha256 of a checkpoint's weights. A local folder: its weight files' bytes, streamed (remembered in `memo`, a
    JSON file, per path, size and modification time, so an unchanged folder is hashed once). Anything else (a Hub
    id, a loaded model): the state dict's tensors, by name, dtype, shape and bytes."""
    folder = Path(model_or_path) if isinstance(model_or_path, (str, Path)) else None
    if folder is not None and folder.is_dir():
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(WEIGHT_FILES))  # what from_pretrained reads
        if files:
            stamp = json.dumps([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
            seen = json.loads(Path(memo).read_text(encoding="utf-8")) if memo and Path(memo).exists() else {}
            if stamp in seen:
                return seen[stamp]
            h = hashlib.sha256()
            for f in files:
                h.update(f.name.encode() + b"\0")
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            if memo:
                seen[stamp] = h.hexdigest()
                Path(memo).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(f"{memo}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(seen), encoding="utf-8")
                tmp.replace(memo)
            return h.hexdigest()
    if folder is not None:
        raise ValueError(f"{model_or_path}: not a folder with weights; pass the loaded model to hash its tensors")
    h = hashlib.sha256()
    for name, t in sorted(model_or_path.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class GenerationCache:
    """Append-only JSONL of {key, text}: one file per (model weights, decoding settings)."""

    def __init__(self, folder: str | Path, weights: str, decoding: Decoding):
        self.path = Path(folder) / f"{_digest(weights, decoding.key())}.jsonl"
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
        self.stop_ids = stop_token_ids(self.tok, self.model)
        self.cache_dir = cache_dir
        # the cache key: the weights, whatever path they were loaded from
        self.weights = (weights_fingerprint(model_id, Path(cache_dir) / "weights.json") if Path(model_id).is_dir()
                        else weights_fingerprint(self.model)) if cache_dir else None
        self.batch_size = batch_size
        self.progress = progress
        self.calls = 0  # prompts actually run through the model (cache misses)
        self.truncated = 0  # of those, replies cut by max_new_tokens before an end-of-turn token

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
        cache = GenerationCache(self.cache_dir, self.weights, decoding) if self.cache_dir else None
        rendered = [self.render(p, chat=chat) for p in prompts]
        keys = [[_digest(r, str(i)) for i in range(n)] for r in rendered]
        todo = [(pi, si) for pi in range(len(prompts)) for si in range(n) if not (cache and keys[pi][si] in cache.done)]
        out: dict[tuple[int, int], str] = {}
        bar = tqdm(total=len(todo), desc=desc, unit="gen", disable=not self.progress or not todo)
        for b in range(0, len(todo), self.batch_size):
            batch = todo[b : b + self.batch_size]
            torch.manual_seed(decoding.seed + b)
            enc = self.tok([rendered[pi] for pi, _ in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            config = sampling_config(max_new_tokens=decoding.max_new_tokens, temperature=decoding.temperature,
                                     top_p=decoding.top_p, stop_ids=self.stop_ids, pad_id=self.tok.pad_token_id)
            with checkpoint_defaults_off(self.model):
                gen = self.model.generate(**enc, generation_config=config)
            replies = [cut_at_stop(row.tolist(), self.stop_ids) for row in gen[:, enc["input_ids"].shape[1]:]]
            self.truncated += sum(not ended for _, ended in replies)
            texts = self.tok.batch_decode([ids for ids, _ in replies], skip_special_tokens=True)
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
