"""The three datasets' columns, declared once as `datasets.Features`: the Parquet files are written with their
Arrow schemas and the dataset cards' `dataset_info` is generated from them."""

from __future__ import annotations

import pyarrow as pa
from datasets import Features, List, Value

TEXT = Value("string")
MESSAGES = List({"role": TEXT, "content": TEXT})  # a conversation, TRL's conversational format
BASE = {"prompt_id": TEXT, "user": TEXT, "source": TEXT, "prompt_type": TEXT, "category": TEXT}

SFT = Features({**BASE, "demonstration_id": TEXT, "messages": MESSAGES, "prompt": MESSAGES, "completion": MESSAGES})
PAIRS = Features({**BASE, "group": TEXT, "prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES,
                  "chosen_rank": Value("int64"), "rejected_rank": Value("int64")})
RANKINGS = Features({**BASE, "ranking_id": TEXT, "prompt": MESSAGES, "completions": List(TEXT), "ranks": List(Value("int64"))})
PPO = Features({**BASE, "prompt": MESSAGES})

# dataset → config → (features, folder of its Parquet files)
DATASETS = {"sft": {"default": (SFT, "data")}, "rm": {"default": (PAIRS, "data"), "rankings": (RANKINGS, "rankings")},
            "ppo": {"default": (PPO, "data")}}


def arrow_schema(features: Features) -> pa.Schema:
    """The Arrow schema the files are written with (without the `huggingface` metadata key, which
    `Features.arrow_schema` would add to every file)."""
    return pa.schema(features.type)


SFT_SCHEMA, PAIRS_SCHEMA, RANKINGS_SCHEMA, PPO_SCHEMA = (arrow_schema(f) for f in (SFT, PAIRS, RANKINGS, PPO))
