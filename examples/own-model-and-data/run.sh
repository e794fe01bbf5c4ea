#!/usr/bin/env bash
# Your own model, data and reward, end to end: JSONL word problems -> SFT -> GRPO with the math reward ->
# a checkpoint -> reloaded and sampled with its chat template. Run from anywhere; writes $OUT (default runs/own).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/own}
X=examples/own-model-and-data
dotnet build src/Engine.Cli -c Release -v q -nologo >/dev/null
engine() { dotnet run --project src/Engine.Cli -c Release --no-build -- "$@"; }

# 1. SFT of a small Qwen3-architecture model, new, with a Hugging Face BPE tokenizer (the tests' Qwen2-style
#    fixture: byte-level BPE with <|im_start|> / <|im_end|>) and the ChatML template. Its checkpoints are
#    Hugging Face folders: config.json, model.safetensors, tokenizer.json, chat_template.jinja.
engine sft --data $X/train.jsonl --eval-data $X/eval.jsonl \
    --model-family qwen3 --model-tokenizer tests/Engine.Tests/Fixtures/tokenizers/qwen2_style_tokenizer.json --chat-template chatml \
    --model-layers 2 --model-dim 64 --model-heads 4 --model-kv-heads 2 --model-max-positions 96 \
    --set sft.steps=300 sft.batch_size=32 sft.learning_rate=0.003 sft.eval_examples=200 \
    --out $OUT/sft

# 2. GRPO from that checkpoint (any Hugging Face model folder works the same way), rewarded by the math verifier
#    (the last number / \boxed{} / #### answer of the response, compared numerically with the answer field).
engine rl --algo grpo --model $OUT/sft/checkpoints/sft-000300/model --data $X/train.jsonl --eval-data $X/eval.jsonl --reward math \
    --set rl.steps=40 rl.prompts_per_step=16 rl.samples_per_prompt=8 rl.max_new_tokens=4 rl.learning_rate=0.0005 rl.warmup_steps=0 \
          rl.eval_every=10 rl.eval_examples=200 rl.eval_samples=8 rl.checkpoint_every=20 \
    --keep-last 2 --out $OUT/rl

# 3. The final checkpoint, reloaded and sampled with its own chat template (read from the checkpoint).
engine generate --model $OUT/rl/checkpoints/rl-000040/model --chat-template auto --temperature 0 --max-new-tokens 4 \
    --prompt "Ana has 4 apples and gets 3 more. How many apples does Ana have?"
