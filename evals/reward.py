"""Scoring conversations with a reward model (a sequence classifier with one output).

Shared by the evals (win-rate judge) and by the trainers (RM accuracy and offset, PPO rewards), so a reward
means the same thing wherever it is computed. Lives in evals because evals must score checkpoints trained
anywhere and never import the training code; the trainers import it from here.
"""

from __future__ import annotations

import torch


def chat_token_ids(tok, messages: list[dict], *, add_generation_prompt: bool = False, max_length: int | None = None) -> list[int]:
    """Token ids of a conversation through the tokenizer's chat template (or `role: content` lines when it has
    none); long conversations keep their end, where the completion is."""
    if tok.chat_template:
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True)["input_ids"]
    else:
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + ("\nassistant:" if add_generation_prompt else "")
        ids = tok(text)["input_ids"]
    ids = list(ids)
    return ids[-max_length:] if max_length else ids


def pad(seqs: list[list[int]], pad_id: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to one tensor (right by default; left for generation); returns ids and attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


@torch.no_grad()
def score(model, tok, conversations: list[list[dict]], batch_size: int = 16, max_length: int | None = 1024) -> torch.Tensor:
    """Raw reward (before any offset) of each conversation, the completion being its last message."""
    model.eval()
    out = []
    device = next(model.parameters()).device
    for i in range(0, len(conversations), batch_size):
        ids, mask = pad([chat_token_ids(tok, c, max_length=max_length) for c in conversations[i : i + batch_size]], tok.pad_token_id)
        out.append(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def pair_outcomes(model, tok, pairs: list[tuple[list[dict], list[dict], list[dict]]], max_length: int | None = 1024) -> list[bool]:
    """For each (prompt, chosen, rejected) pair: does the chosen completion score higher?"""
    if not pairs:
        return []
    chosen = score(model, tok, [p + c for p, c, _ in pairs], max_length=max_length)
    rejected = score(model, tok, [p + r for p, _, r in pairs], max_length=max_length)
    return (chosen > rejected).tolist()


def pair_accuracy(model, tok, pairs: list[tuple[list[dict], list[dict], list[dict]]], max_length: int | None = 1024) -> float:
    """Share of (prompt, chosen, rejected) pairs where the chosen completion scores higher."""
    wins = pair_outcomes(model, tok, pairs, max_length)
    return sum(wins) / len(wins) if wins else float("nan")


def accuracy_with_ci(wins: list[bool], groups: list | None = None, seed: int = 0) -> dict:
    """Pairwise accuracy with a 95% interval: pairs of one ranking are not independent, so with `groups` (the
    ranking of each pair) the interval resamples rankings (cluster bootstrap); else Wilson's interval."""
    from evals.stats import bootstrap_ci, wilson_ci

    n = len(wins)
    if not n:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    value = sum(wins) / n
    lo, hi = bootstrap_ci([float(w) for w in wins], seed=seed, groups=groups) if groups else wilson_ci(sum(wins), n)
    return {"value": round(value, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)], "n": n,
            **({"rankings": len(set(groups))} if groups else {})}
