"""`instructkit eval`'s settings: one dataclass; every field is a flag of `instructkit eval` with this help text."""

from __future__ import annotations

from dataclasses import dataclass

from builders.flags import setting

TASKS = ("winrate", "truthfulqa", "toxicity")
# github.com/sylinrl/TruthfulQA at a commit whose data/v0/TruthfulQA.csv is the original 817-question release
TRUTHFULQA_COMMIT = "d71c110897f5d31c5d7f309e7bc316c152f6f031"


@dataclass
class EvalConfig:
    model: str | None = setting(None, help="checkpoint to score: local path or Hub id of a causal LM")
    baseline: str | None = setting(None, help="checkpoint to compare against in the win-rate (e.g. the SFT model)")
    reward_model: str | None = setting(None, help="reward model that judges the win-rate")
    judge: str | None = setting(None, help="instead of the reward model: llm:PATH_OR_ID (a local chat model) or "
                                "openai:BASE_URL#MODEL")
    tasks: list[str] = setting(default_factory=lambda: list(TASKS), metavar="TASK,...",
                               help="comma-separated subset of winrate,truthfulqa,toxicity")
    limit: int | None = setting(None, help="at most this many prompts / questions per task: a random subset drawn "
                                "with --seed (TruthfulQA's MC and generation tasks get the same questions)")
    data_dir: str | None = setting(None, help="local copies of the public benchmarks (e.g. ../shared/data); default: the Hub")
    out: str = setting("eval_out", help="output folder; rerunning into it resumes from cached generations")
    prompts: str = setting("builders/ppo", help="win-rate prompts: a built PPO folder (its test split) or a file")
    toxicity_k: int = setting(25, help="continuations per RealToxicityPrompts prompt")
    toxicity_scorer: str = setting("default", help="default (= minilm: MiniLM + a head trained on RealToxicityPrompts "
                                   "and short benign replies, offline), minilm:HEAD.skops, profanity-check, hf:PATH_OR_ID "
                                   "or perspective")
    truthfulqa_judge: str = setting("auto", choices=("auto", "reference", "tfidf"),
                                    help="TruthfulQA generation judges: reference (compare with the question's reference "
                                    "answers; `instructkit eval train-judge` trains them once), tfidf, or auto: reference "
                                    "when trained for this data, else tfidf")
    truthfulqa_revision: str = setting(TRUTHFULQA_COMMIT, help="commit (or branch, tag) of github.com/sylinrl/TruthfulQA "
                                       "for the questions (data/v0/TruthfulQA.csv) and the judge data (online only); "
                                       "default: a commit that serves the original 817-question release")
    max_new_tokens: int = setting(128, help="reply length cap (replies end at their end-of-turn token)")
    temperature: float = setting(0.7, help="win-rate sampling temperature (pure nucleus sampling)")
    top_p: float = setting(0.95, help="nucleus sampling's top-p")
    seed: int = setting(0, help="seeds sampling and the bootstrap intervals")
    trust_remote_code: bool = setting(False, help="allow custom model code from the Hub")
    progress: bool = setting(True, cli=False, help="progress bars (`--quiet` turns them off)")
