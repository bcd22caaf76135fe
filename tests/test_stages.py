"""Dedup, cap and split on crafted cases."""

from __future__ import annotations

import polars as pl

from builders.sources import load_source
from builders.stages.cap import cap_per_user
from builders.stages.dedup import dedup
from builders.stages.split import split_by_user
from builders.stages.validate import validate
from tests.conftest import prompt, write_jsonl

PREAMBLE = ("You are a helpful assistant that writes short product descriptions for an online store. Each description must "
            "be under thirty words and mention one concrete benefit. Product: Bamboo toothbrush. Description: gentle and "
            "kind to the planet. Product: Wool socks. Description: warm and dry. Product: ")


def tables_of(tmp_path, rows):
    return validate(list(load_source(f"jsonl:{write_jsonl(tmp_path / 'p.jsonl', rows)}").stream()), key=b"k")[0]


def test_near_duplicate_prefixes_are_removed_keeping_the_earliest(tmp_path):
    rows = [prompt("t3", PREAMBLE + "Kettle. Description:", created="2021-01-03T00:00:00Z"),
            prompt("t1", PREAMBLE + "Yoga mat. Description:", created="2021-01-01T00:00:00Z"),
            prompt("t2", PREAMBLE.replace("helpful", "very helpful") + "Lamp. Description:", created="2021-01-02T00:00:00Z"),
            prompt("x", "Write a haiku about the sea.")]
    out, result = dedup(tables_of(tmp_path, rows))
    assert sorted(out.prompts["prompt_id"].to_list()) == ["t1", "x"]
    reasons = dict(zip(result.dropped["record_id"].to_list(), result.dropped["reason"].to_list()))
    assert reasons == {"t3": "exact_prefix_duplicate", "t2": "near_duplicate_prefix"}


def test_exact_prefix_duplicates_keep_the_first_by_time_then_id_within_each_conversation(tmp_path):
    """The exact fast path (digests grouped by a stable sort of numbers) against the plain definition: prompts with
    the same earlier turns and the same normalised prefix form a group, the earliest (unknown times last, then the
    smallest id) stays, every other one is an exact duplicate; unrelated texts are never joined."""
    import random

    from builders.stages.dedup import normalised_prefix

    rng = random.Random(7)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in ("bar", "cen", "dol", "fim", "gup", "hax")]
    bases = [" ".join(rng.choice(vocab) for _ in range(14)) for _ in range(25)]
    times = [None, "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z", "2021-01-03T00:00:00Z"]
    rows = []
    for i in range(160):
        text = rng.choice(bases)
        text = rng.choice([text, text.upper(), "  " + text.replace(" ", "   ") + " "])
        first = rng.choice([None, "Plan a trip.", "Fix my code."])
        r = prompt(f"p{rng.randrange(10**6):06d}-{i}", text, created=rng.choice(times))
        if first is not None:
            del r["text"]
            r["messages"] = [{"role": "user", "content": first}, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": text}]
        rows.append(r)
    tables = tables_of(tmp_path, rows)
    out, result = dedup(tables)

    ref = (tables.prompts.with_columns(normalised_prefix(pl.col("text"), 200).alias("_prefix"))
           .sort(["created_at", "prompt_id"], nulls_last=True)
           .group_by(["context_key", "_prefix"], maintain_order=True).agg(pl.col("prompt_id").first()))
    assert sorted(out.prompts["prompt_id"].to_list()) == sorted(ref["prompt_id"].to_list())
    assert set(result.dropped["reason"]) == {"exact_prefix_duplicate"}
    assert result.dropped.height == len(rows) - ref.height and result.notes["distinct_exact_prefixes"] == ref.height


def test_distinct_prompts_with_a_short_shared_prefix_are_kept(tmp_path):
    rows = [prompt(f"p{i}", f"Write a poem about {t}.") for i, t in enumerate(
        ["cats", "the ocean at night", "my grandmother's garden", "a broken clock", "winter in Oslo"])]
    rows += [prompt("q1", "Translate to French: I love my dog."), prompt("q2", "Translate to French: Where is the station?")]
    out, result = dedup(tables_of(tmp_path, rows))
    assert out.prompts.height == len(rows) and result.dropped.height == 0


def test_case_and_whitespace_do_not_hide_a_duplicate_and_labels_follow(tmp_path):
    rows = [prompt("a", "Who built the statue of liberty?", created="2021-01-01T00:00:00Z"),
            prompt("b", "who  built the Statue of Liberty?", created="2021-02-01T00:00:00Z"),
            {"prompt_id": "b", "labeler_id": "l1", "completion": "Bartholdi designed it."}]
    out, result = dedup(tables_of(tmp_path, rows))
    assert out.prompts["prompt_id"].to_list() == ["a"]
    assert out.demonstrations.height == 0
    assert ("b:d0", "demonstration", "prompt_was_duplicate") in set(
        zip(result.dropped["record_id"], result.dropped["kind"], result.dropped["reason"]))


def test_same_follow_up_in_different_conversations_is_not_a_duplicate(tmp_path):
    def chat(pid, first):
        r = prompt(pid, None, messages=[{"role": "user", "content": first}, {"role": "assistant", "content": "Sure."},
                                        {"role": "user", "content": "Can you make it shorter?"}])
        del r["text"]
        return r

    out, _ = dedup(tables_of(tmp_path, [chat("a", "Write a poem about rain."), chat("b", "Explain tax brackets.")]))
    assert out.prompts.height == 2


def test_cap_keeps_200_per_user_deterministically_by_seed(tmp_path):
    rows = [prompt(f"h{i:03d}", f"prompt number {i}", user="heavy") for i in range(250)]
    rows += [prompt(f"l{i}", f"light {i}", user="light") for i in range(5)]
    tables = tables_of(tmp_path, rows)
    out, result = cap_per_user(tables, cap=200, seed=1)
    counts = dict(out.prompts.group_by("user").len().iter_rows())
    assert sorted(counts.values()) == [5, 200]
    assert result.dropped.height == 50 and set(result.dropped["reason"]) == {"over_200_prompts_per_user"}
    again, _ = cap_per_user(tables, cap=200, seed=1)
    other, _ = cap_per_user(tables, cap=200, seed=2)
    assert again.prompts["prompt_id"].to_list() == out.prompts["prompt_id"].to_list()
    assert other.prompts["prompt_id"].to_list() != out.prompts["prompt_id"].to_list()


def test_cap_keeps_each_users_first_prompts_in_seeded_hash_order(tmp_path):
    # the reference: sort every prompt by (user, seeded hash of its id, id) and keep each user's first `cap`
    from builders.stages import stable_hash

    rows = [prompt(f"q{(i * 7919) % 1000:04d}", f"text {i}", user=f"user{i % 9 if i % 4 else 0}") for i in range(1000)]
    tables = tables_of(tmp_path, rows)
    out, result = cap_per_user(tables, cap=40, seed=3)
    ref = (tables.prompts.with_columns(stable_hash(tables.prompts["prompt_id"], 3).alias("_o")).sort(["user", "_o", "prompt_id"])
           .with_columns(pl.int_range(pl.len()).over("user").alias("_r")))
    assert out.prompts["prompt_id"].to_list() == ref.filter(pl.col("_r") < 40)["prompt_id"].sort().to_list()
    assert sorted(result.dropped["record_id"]) == sorted(ref.filter(pl.col("_r") >= 40)["prompt_id"])
    assert result.notes == {"users_over_cap": 9}


def test_split_never_puts_a_user_in_two_splits_and_follows_ratios(tmp_path):
    rows = [prompt(f"p{u}_{i}", f"user {u} prompt {i}", user=f"user{u}") for u in range(300) for i in range(1 + u % 7)]
    tables = tables_of(tmp_path, rows)
    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    out, result = split_by_user(tables, ratios=ratios, seed=3)
    per_user = out.prompts.group_by("user").agg(pl.col("split").n_unique())
    assert per_user["split"].max() == 1
    shares = out.prompts["split"].value_counts(normalize=True)
    share = dict(zip(shares["split"], shares["proportion"]))
    for split, target in ratios.items():
        assert abs(share[split] - target) < 0.02, (split, share)
    again, _ = split_by_user(tables, ratios=ratios, seed=3)
    assert again.prompts["split"].to_list() == out.prompts["split"].to_list()


def test_batch_signatures_equal_datasketch_minhash():
    """Our batched MinHash is datasketch's MinHash (same permutations, scheme and hash), computed for many at once."""
    import numpy as np
    import xxhash
    from datasketch import MinHash

    from builders.stages.dedup import shingles, signatures

    prefixes = ["write a poem about the sea", "", "a", "summarize the following article about tides and the moon " * 3,
                "what is the capital of france?"] * 300
    ours = signatures(prefixes, 3, 128)
    ref = MinHash.bulk([shingles(p, 3) for p in prefixes], num_perm=128, seed=1, hashfunc=xxhash.xxh32_intdigest)
    assert ours.shape == (1500, 128)
    assert np.array_equal(ours, np.vstack([m.hashvalues for m in ref]))
