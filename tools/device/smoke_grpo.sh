#!/usr/bin/env bash
# GPU run of GRPO with the Transformer Engine spec in bf16: a short cold-start SFT, then a few
# reasoning_rl steps from it with the built-in rollout engine. Prints a table last.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
base="model=deepseek_v3_tiny model.spec=te trainer.precision.dtype=bf16 trainer.progress=false"
python3 -m r1mega.cli.train stage=sft $base trainer.max_steps=${SFT_STEPS:-150} trainer.save_interval=0 \
  optim.lr=3e-3 data.seq_length=160 hydra.run.dir=/tmp/runs/cold > "$OUT/grpo_cold.log" 2>&1
echo "cold_start exit=$?" >> "$OUT/grpo_status.txt"
python3 -m r1mega.cli.train stage=reasoning_rl $base trainer.init_from=/tmp/runs/cold/checkpoints \
  trainer.max_steps=${RL_STEPS:-5} trainer.global_batch_size=128 trainer.micro_batch_size=32 rl.group_size=8 \
  rl.kl_beta=0.001 rl.rollout_is_correction=tis rollout.max_tokens=96 evaluation.k=4 \
  data.synthetic.num_test=64 data.seq_length=160 hydra.run.dir=/tmp/runs/grpo > "$OUT/grpo.log" 2>&1
echo "grpo exit=$?" >> "$OUT/grpo_status.txt"
cp /tmp/runs/grpo/metrics.jsonl "$OUT/grpo.metrics.jsonl" 2>/dev/null
cp /tmp/runs/grpo/summary.json "$OUT/grpo.summary.json" 2>/dev/null
tar czf "$OUT/grpo_logs.tgz" -C "$OUT" grpo.log grpo_cold.log 2>/dev/null && rm -f "$OUT/grpo.log" "$OUT/grpo_cold.log"
python3 - <<'PY'
import json, os
out = os.environ.get("OUT", "/tmp/out")
print(open(f"{out}/grpo_status.txt").read())
try:
    rows = [json.loads(l) for l in open(f"{out}/grpo.metrics.jsonl")]
except OSError:
    raise SystemExit("no GRPO metrics; see grpo.log")
keys = ["reward_mean", "accuracy", "actor_ratio_max", "kl_ref", "mismatch_kl_k3", "entropy",
        "rollout_tokens_per_s", "train_tokens_per_s", "time_rollout", "time_train"]
print("step " + " ".join(f"{k[:14]:>14s}" for k in keys))
for r in rows:
    print(f"{r['step']:4d} " + " ".join(f"{(r.get(k) if r.get(k) is not None else float('nan')):14.5g}" for k in keys))
s = json.load(open(f"{out}/grpo.summary.json"))
print("pass@1 before", s["eval_before"]["pass@1"], "after", s["eval_after"]["pass@1"])
PY
