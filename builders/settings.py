"""Build settings: one dataclass, defaults written once; a YAML config uses the same keys as the CLI flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from builders.errors import InputError
from builders.flags import check_choices, setting
from builders.vocabulary import SOURCES

MAX_TEXT_CHARS = 1_000_000  # spaCy's default nlp.max_length: the PII stage's NER refuses longer texts (E088)


@dataclass
class BuildSettings:
    """Every knob of `instructkit build`: each field is a flag (`--cap-per-user`), a YAML key (`cap_per_user` or
    `cap-per-user`) and a line of `build --help`; the help text is the default's justification."""

    sources: list[str] = setting(default_factory=lambda: ["sample"], flag="--source", repeat=True, metavar="SPEC",
              help=('Source specs (`sample`, `oasst:ID_OR_PATH`, `hh-rlhf:ID_OR_PATH`, `jsonl:PATH`, `parquet:PATH`).'))
    out: str = setting("builders",
              help='Folder that receives sft/, rm/, ppo/ and build_report.json.')
    seed: int = setting(0,
              help='Seeds every random choice (cap sampling, user split order).')
    on_error: str = setting("fail", choices=("fail", "skip"),
              help='`fail`: stop at the first malformed record; `skip`: drop it and list it in the report.')
    max_prompt_chars: int = setting(100_000,
              help=('Longer prompts, demonstrations or completions are rejected as malformed (a 10 MB paste is not a '
                    'prompt). At most 1,000,000: the PII stage\'s language model reads no longer text.'))

    dedup_prefix_chars: int = setting(200,
              help=('Prompts are compared on their first 200 normalised characters: few-shot templates share preambles '
                    'much longer than that, while distinct short prompts are compared whole.'))
    dedup_shingle_words: int = setting(3,
              help=('Word 3-grams: one changed word in a short prompt changes several shingles, so distinct short prompts'
                    ' stay apart, while light edits of a long template keep most shingles.'))
    dedup_num_perm: int = setting(128,
              help='MinHash permutations: Jaccard estimates within about ±0.04 (1/sqrt(128)/2).')
    dedup_threshold: float = setting(0.8,
              help='Estimated Jaccard at or above which two prefixes are the same prompt.')
    dedup_bands: int = setting(16,
              help=('LSH bands (16 × 8 rows): candidate pairs start near Jaccard 0.7, below the threshold, so few are '
                    'missed; every candidate is then checked against the threshold.'))

    cap_per_user: int = setting(200,
              help="The paper's cap on prompts per user id.")

    split_ratios: dict[str, float] = setting(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}, 
                             metavar="train=R,validation=R,test=R",
              help='Target share of prompts per split; users are assigned whole.')

    pii_mode: str = setting("redact", choices=("redact", "drop"),
              help='`redact`: typed placeholders such as <EMAIL_ADDRESS>; `drop`: remove the record.')
    pii_scope: str = setting("all", choices=("all", "train"),
              help="`all` splits (safe to publish) or `train` only (the paper's exact procedure).")
    pii_names: str = setting("all", choices=("all", "personal"),
              help=("`all`: every person's name found is redacted (privacy first); `personal`: names of public figures "
                    'with no personal cue nearby are kept ("Was it George Washington?"); measured not to leak more names '
                    'than presidio.'))

    ppo_sources: list[str] = setting(default_factory=lambda: ["api"], metavar="SOURCE,...",
              help='Prompt sources that feed the PPO dataset (the paper used customer prompts only).')
    allow_empty: bool = setting(False,
              help=('Write a dataset that ends up with no rows (e.g. a log with prompts but no labels gives no SFT or '
                    'RM data) as a folder `load_dataset` reads with 0 rows; by default an empty dataset is an error '
                    'that says why.'))
    license: str | None = setting(None,
              help='Licence in the dataset cards; by default taken from the sources.')

    classifier: str = setting("fast",
              help=('The use-case classifier: `fast` (shipped, thousands of prompts/s), `embed` (shipped, MiniLM '
                    'embeddings, ~45 prompts/s per CPU core; the embed extra), a skops file from `taxonomy train`, '
                    '`llm:BASE_URL[#MODEL]` (an OpenAI-compatible endpoint asked with Table 1\'s rubric, cached) or '
                    '`hf:MODEL_ID_OR_PATH[#LABELS.yaml]` (a Hugging Face text classifier mapped to Table 1).'))

    engine: str = setting("local", choices=("local", "ray"),
              help=('Where the per-row work (MinHash, PII, classification) runs: `local` (this machine) or `ray` (Ray '
                    'Data). Output is identical either way.'))
    workers: int | None = setting(None,
              help=('Worker processes (local) or CPUs (a local Ray instance); default: every core. Small inputs stay in-'
                    'process.'))
    ray_address: str | None = setting(None,
              help=('A running Ray cluster to join (`auto`, `HOST:PORT`, `ray://HOST:10001`); default: start a private local Ray '
                    'instance, even where a cluster runs on this machine.'))

    def __post_init__(self) -> None:
        check_choices(self)
        if set(self.split_ratios) != {"train", "validation", "test"} or any(v < 0 for v in self.split_ratios.values()):
            raise InputError("needs non-negative train, validation and test ratios", field="split_ratios")
        if not self.split_ratios["train"] > 0:
            raise InputError("train ratio must be positive", field="split_ratios")
        if self.dedup_num_perm % self.dedup_bands:
            raise InputError("dedup_num_perm must be a multiple of dedup_bands", field="dedup_bands")
        if not 0 < self.dedup_threshold <= 1:
            raise InputError("must be in (0, 1]", field="dedup_threshold")
        if self.workers is not None and self.workers < 1:
            raise InputError("must be at least 1", field="workers")
        if self.cap_per_user < 1:
            raise InputError("must be at least 1", field="cap_per_user")
        if not 1 <= self.max_prompt_chars <= MAX_TEXT_CHARS:
            raise InputError(f"must be between 1 and {MAX_TEXT_CHARS:,} (the PII stage's language model reads no longer "
                             "text)", field="max_prompt_chars")
        unknown = [s for s in self.ppo_sources if s not in SOURCES]
        if unknown or not self.ppo_sources:
            raise InputError(f"prompt sources are {', '.join(SOURCES)}" + (f": got {', '.join(map(repr, unknown))}" if unknown else
                             ": give at least one"), field="ppo_sources")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "BuildSettings":
        """Read a YAML config; keys are the CLI flag names (dashes or underscores), CLI overrides win."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read config: {exc}", file=str(path)) from exc
        if not isinstance(data, dict):
            raise InputError("config must be a mapping of setting: value", file=str(path))
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name == "source":
                name = "sources"
            if name not in known:
                raise InputError(f"unknown setting (known: {', '.join(sorted(known))})", file=str(path), field=key)
            values[name] = value
        if isinstance(values.get("sources"), str):
            values["sources"] = [values["sources"]]
        given = {k for k, v in overrides.items() if v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except InputError as err:  # a value from the file: name the file (a flag's value is named by the CLI)
            if err.file is None and err.field and err.field not in given:
                raise InputError(err.reason, file=str(path), field=err.field, detail=err.detail) from None
            raise
        except TypeError as exc:  # a value of the wrong shape (a list where a number goes, ...)
            raise InputError(f"a setting has the wrong type ({exc})", file=str(path)) from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
