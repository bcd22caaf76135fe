"""End-to-end builds: the sample, oasst1 and HH-RLHF from ../shared/data; load_dataset; determinism; accounting."""

from __future__ import annotations

import gzip
import json
from itertools import combinations
from pathlib import Path

import datasets
import polars as pl
import pytest

from builders.errors import InputError
from builders.pipeline import build
from builders.settings import BuildSettings
from builders.sources import load_source
from tests.conftest import prompt, write_jsonl

SPLITS = {"train", "validation", "test"}


def test_sample_folders_load_with_load_dataset(sample_build):
    out, report = sample_build
    for name in ("sft", "rm", "ppo"):
        ds = datasets.load_dataset(str(out / name))
        assert set(ds) == SPLITS, name
        assert all(ds[s].num_rows > 0 for s in SPLITS)
    rankings = datasets.load_dataset(str(out / "rm"), "rankings")
    assert set(rankings) == SPLITS
    sft = datasets.load_dataset(str(out / "sft"), split="train")
    row = sft[0]
    assert row["messages"][-1]["role"] == "assistant" and row["completion"] == [row["messages"][-1]]
    assert row["prompt"] == row["messages"][:-1]


def test_sample_covers_what_the_pipeline_is_for(sample_build):
    out, report = sample_build
    stages = {s["name"]: s for s in report["stages"]}
    assert [s["name"] for s in report["stages"]] == ["validate", "dedup", "cap_per_user", "split_by_user", "pii", "classify", "assemble"]
    assert stages["dedup"]["dropped"].get("near_duplicate_prefix", 0) > 0
    assert stages["dedup"]["dropped"].get("exact_prefix_duplicate", 0) > 0
    assert stages["cap_per_user"]["dropped"] == {"over_200_prompts_per_user": stages["cap_per_user"]["in"] - stages["cap_per_user"]["out"]}
    assert stages["pii"]["notes"]["entities"].get("EMAIL_ADDRESS", 0) > 0
    counts = {c: v["count"] for c, v in report["use_cases"]["all_prompts"].items()}
    assert len(counts) == 10 and sum(counts.values()) == stages["classify"]["out"]
    assert {r["dataset"] for r in report["table6"]} == {"SFT", "RM", "PPO"}


def test_rm_pairs_are_all_comparisons_of_each_ranking_without_ties(sample_build):
    out, _ = sample_build
    rankings = pl.read_parquet(out / "rm" / "rankings" / "train-*.parquet")
    pairs = pl.read_parquet(out / "rm" / "data" / "train-*.parquet")
    expected = sum(sum(1 for a, b in combinations(r, 2) if a != b) for r in rankings["ranks"].to_list())
    assert pairs.height == expected
    assert (pairs["chosen_rank"] < pairs["rejected_rank"]).all()
    assert set(pairs["group"]) <= set(rankings["ranking_id"])
    # each pair is (better, worse) of its own ranking, in the ranking's order
    expected_pairs = [(r["ranking_id"], r["completions"][i], r["completions"][j]) if r["ranks"][i] < r["ranks"][j]
                      else (r["ranking_id"], r["completions"][j], r["completions"][i])
                      for r in rankings.sort("prompt_id", "ranking_id").iter_rows(named=True)
                      for i, j in combinations(range(len(r["ranks"])), 2) if r["ranks"][i] != r["ranks"][j]]
    content = lambda col: pairs[col].list.first().struct.field("content").to_list()  # noqa: E731
    assert list(zip(pairs["group"], content("chosen"), content("rejected"))) == expected_pairs
    tied = rankings.filter(pl.col("ranks").list.n_unique() < pl.col("ranks").list.len())
    assert tied.height > 0  # the sample has ties, and they gave fewer pairs than C(K,2)


def test_no_user_in_two_splits_and_users_are_pseudonyms(sample_build):
    out, _ = sample_build
    frames = [pl.read_parquet(f).select("user", pl.lit(f.name.split("-")[0]).alias("split"))
              for f in out.glob("*/*/*.parquet")]
    users = pl.concat(frames)
    assert users.group_by("user").agg(pl.col("split").n_unique())["split"].max() == 1
    assert users["user"].str.contains(r"^u_[0-9a-f]{16}$").all()
    raw = {json.loads(line)["user_id"] for line in open(Path("builders/sample/prompts.jsonl"))}
    blob = b"".join(f.read_bytes() for f in out.rglob("*") if f.is_file())
    assert not any(u.encode() in blob for u in raw)


def test_every_input_record_is_in_an_output_or_dropped_with_a_reason(sample_build):
    out, _ = sample_build
    report = json.loads((out / "build_report.json").read_text(encoding="utf-8"))
    dropped = {(r["kind"], r["record_id"]): r["reason"] for r in report["dropped_records"]}
    assert all(dropped.values())
    id_column = {"prompt": "prompt_id", "demonstration": "demonstration_id", "ranking": "ranking_id"}
    written = {kind: set() for kind in id_column}
    for f in out.glob("*/*/*.parquet"):
        df = pl.read_parquet(f)
        for kind, col in id_column.items():
            if col in df.columns:
                written[kind] |= set(df[col])
    counts = dict.fromkeys(id_column, 0)
    seen: dict[tuple[str, str], int] = {}
    for rec in list(load_source("sample").stream()):
        d = rec.data
        kind = "ranking" if "completions" in d else "demonstration" if "completion" in d else "prompt"
        if kind == "prompt":
            rid = d["prompt_id"]
        else:  # labeler records get `<prompt_id>:d<n>` / `:r<n>` ids in input order
            n = seen[(kind, d["prompt_id"])] = seen.get((kind, d["prompt_id"]), -1) + 1
            rid = f"{d['prompt_id']}:{kind[0]}{n}"
        assert rid in written[kind] or (kind, rid) in dropped, rid
        counts[kind] += 1
    acc = report["accounting"]
    assert (acc["prompts"]["validated"], acc["demonstrations"]["validated"], acc["rankings"]["validated"]) == (
        counts["prompt"], counts["demonstration"], counts["ranking"])
    assert acc["prompts"]["in_outputs"] + acc["prompts"]["dropped"] == counts["prompt"]


def test_same_input_and_seed_give_byte_identical_files(sample_build, tmp_path, scanner, classifier):
    out, _ = sample_build
    build(BuildSettings(out=str(tmp_path)), classifier=classifier, scanner=scanner, progress=False)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "build_report.json":  # parquet files and cards
            assert (out / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel
    a, b = (json.loads((d / "build_report.json").read_text()) for d in (out, tmp_path))
    assert a["settings"].pop("out") != b["settings"].pop("out")
    assert a == b


def test_a_failed_build_leaves_the_previous_folders_untouched(sample_build, tmp_path, scanner, classifier):
    out, _ = sample_build
    before = {p: p.read_bytes() for p in out.rglob("*.parquet")}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_id": "x", "text": "no user"}\n')
    with pytest.raises(InputError):
        build(BuildSettings(out=str(out), sources=["sample", f"jsonl:{bad}"]), classifier=classifier, scanner=scanner, progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*.parquet")} == before
    assert not list(out.glob(".build-*"))


def test_oasst_flat_export_accounts_for_every_message(shared, tmp_path, scanner, classifier):
    path = shared / "oasst1_en_validation" / "oasst1_en_validation.jsonl"
    messages = sum(1 for line in open(path, encoding="utf-8") if line.strip())  # 2,022 in the whole split
    report = build(BuildSettings(out=str(tmp_path), sources=[f"oasst:{path}"]), classifier=classifier, scanner=scanner, progress=False)
    src = report["sources"][0]
    assert src["read"] == messages and src["unit"] == "messages"
    assert sum(src["became"].values()) + sum(src["dropped"].values()) == messages
    assert src["dropped"]["deleted"] > 0 and src["dropped"]["review_failed"] > 0
    assert src["became"]["prompt"] == report["accounting"]["prompts"]["validated"]
    rm = datasets.load_dataset(str(tmp_path / "rm"), "rankings")
    ks = [len(r) for s in rm for r in rm[s]["ranks"]]
    assert min(ks) >= 2 and max(ks) >= 3
    sft = datasets.load_dataset(str(tmp_path / "sft"), split="train")
    assert any(len(r) > 2 for r in sft["messages"])  # follow-up turns keep their earlier turns as context


def test_oasst_nested_tree_export_without_user_ids(shared, scanner, classifier):
    data = load_source(f"oasst:{shared / 'oasst_trees_synthetic' / 'en_100_tree.jsonl'}")
    records = list(data.stream(tally=True))
    prompts = [r.data for r in records if r.kind == "prompt"]
    rankings = [r.data for r in records if r.kind == "ranking"]
    trees = sum(1 for _ in open(shared / "oasst_trees_synthetic" / "en_100_tree.jsonl", encoding="utf-8"))
    assert len({p["messages"][0]["content"] for p in prompts}) == trees <= len(prompts)
    assert all(p["user_id"].startswith("tree:") for p in prompts)
    assert rankings and all(len(r["completions"]) == len(r["ranks"]) >= 2 for r in rankings)
    assert sum(data.used.values()) + len(data.dropped) == data.units_read


def test_hh_rlhf_pairs_become_k2_rankings_with_users_by_opening_request(shared):
    data = load_source(f"hh-rlhf:{shared / 'hh_rlhf'}")
    records = list(data.stream(tally=True))
    pairs = sum(1 for part in ("helpful-base", "harmless-base") for _ in gzip.open(shared / "hh_rlhf" / part / "test.jsonl.gz", "rt"))
    assert data.units_read == pairs  # 2,354 + 2,312 in the whole test splits
    assert sum(data.used.values()) + len(data.dropped) == data.units_read
    prompts = {r.data["prompt_id"]: r.data for r in records if r.kind == "prompt"}
    rankings = [r.data for r in records if r.kind == "ranking"]
    assert all(len(r["completions"]) == 2 for r in rankings)
    assert all(p["messages"][-1]["role"] == "user" for p in prompts.values())
    by_open: dict[str, set] = {}
    for p in prompts.values():
        by_open.setdefault(p["messages"][0]["content"], set()).add(p["user_id"])
    assert all(len(u) == 1 for u in by_open.values())


def test_hh_rlhf_build_on_a_slice(shared, tmp_path, scanner, classifier):
    lines = gzip.open(shared / "hh_rlhf" / "helpful-base" / "test.jsonl.gz", "rt", encoding="utf-8").readlines()[:200]
    part = tmp_path / "in" / "helpful-base"
    part.mkdir(parents=True)
    (part / "test.jsonl").write_text("".join(lines), encoding="utf-8")
    report = build(BuildSettings(out=str(tmp_path / "out"), sources=[f"hh-rlhf:{tmp_path / 'in'}"], allow_empty=True),  # no demonstrations: sft is empty
                   classifier=classifier, scanner=scanner, progress=False)
    pairs = datasets.load_dataset(str(tmp_path / "out" / "rm"))
    assert sum(pairs[s].num_rows for s in pairs) == report["accounting"]["rankings"]["in_outputs"]
    assert report["license"] == "mit"


def test_cards_say_how_to_load_the_folder_and_what_the_rm_data_is_made_of(sample_build):
    out, report = sample_build
    rm = (out / "rm" / "README.md").read_text()
    assert 'load_dataset("rm", "rankings")' in rm and "PATH_OR_REPO_ID" not in rm
    assert str(out) not in rm
    r = report["rankings"]
    assert sum(r["by_k"].values()) == r["rankings"] == sum(report["datasets"]["rm"]["rankings"].values())
    assert r["pairs"] == sum(report["datasets"]["rm"]["default"].values())
    assert f"{r['pairs']:,} ({r['pairs_per_ranking']} per ranking)" in rm and "size_categories:" in rm
    assert "arXiv:2203.02155" in rm


def test_a_card_names_only_the_splits_its_dataset_has(tmp_path, scanner, classifier):
    rows = [prompt(f"p{i}", f"Write a poem about the number {i} and the sea {i * 7}.", user="u1", source="labeler")
            for i in range(3)] + [{"prompt_id": f"p{i}", "labeler_id": "l", "completion": f"A poem {i}."} for i in range(3)]
    out = tmp_path / "out"
    build(BuildSettings(out=str(out), sources=[f"jsonl:{write_jsonl(tmp_path / 'one_user.jsonl', rows)}"], ppo_sources=["labeler"],
                        allow_empty=True), classifier=classifier, scanner=scanner, progress=False)
    card = (out / "sft" / "README.md").read_text()
    assert "PII (redact): train redacted." in card and "test redacted" not in card  # one user: train only
