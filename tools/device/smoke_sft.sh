#!/usr/bin/env bash
# GPU smoke test of the SFT stage with the Transformer Engine spec: bf16, then FP8 recipes.
# Needs the wheels from tools/device/stage_wheels.sh in /tmp/site. Prints a table last.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
STEPS=${STEPS:-40}
common="stage=sft model=deepseek_v3_tiny model.spec=te trainer.max_steps=$STEPS trainer.progress=false \
 trainer.save_interval=0 trainer.global_batch_size=32 trainer.micro_batch_size=8 data.seq_length=256"
declare -A RUNS=(
  [bf16]="trainer.precision.dtype=bf16"
  [fp8_blockwise]="trainer.precision.dtype=bf16 trainer.precision.fp8=e4m3 trainer.precision.fp8_recipe=blockwise model.moe_ffn_hidden_size=128 model.moe_shared_expert_intermediate_size=128"
  [fp8_tensorwise]="trainer.precision.dtype=bf16 trainer.precision.fp8=hybrid trainer.precision.fp8_recipe=tensorwise model.moe_ffn_hidden_size=128 model.moe_shared_expert_intermediate_size=128"
)
for name in bf16 fp8_blockwise fp8_tensorwise; do
  python3 -m r1mega.cli.train $common ${RUNS[$name]} hydra.run.dir=/tmp/runs/$name > "$OUT/$name.log" 2>&1
  echo "$name exit=$?" >> "$OUT/status.txt"
  cp /tmp/runs/$name/metrics.jsonl "$OUT/$name.metrics.jsonl" 2>/dev/null || true
done
# Resume on GPU (distributed optimizer): continue the bf16 run from its final checkpoint.
python3 -m r1mega.cli.train $common ${RUNS[bf16]} trainer.max_steps=$((STEPS + 10)) hydra.run.dir=/tmp/runs/bf16 > "$OUT/bf16_resume.log" 2>&1
echo "bf16_resume exit=$?" >> "$OUT/status.txt"
cp /tmp/runs/bf16/metrics.jsonl "$OUT/bf16_resume.metrics.jsonl" 2>/dev/null || true
python3 -c "import json; print('bf16_resume resumed_from', json.load(open('/tmp/runs/bf16/summary.json'))['resumed_from'])"
python3 - <<'PY'
import json, os
out = os.environ.get("OUT", "/tmp/out")
print(f"{'run':16s} {'exit':>4s} {'loss@1':>8s} {'loss@end':>9s} {'tok/s':>9s}")
for line in open(f"{out}/status.txt"):
    name, code = line.split()
    try:
        rows = [json.loads(l) for l in open(f"{out}/{name}.metrics.jsonl")]
        tps = sum(r["tokens_per_s"] for r in rows[5:]) / max(len(rows[5:]), 1)
        print(f"{name:16s} {code[5:]:>4s} {rows[0]['loss']:8.3f} {rows[-1]['loss']:9.3f} {tps:9.0f}")
    except OSError:
        print(f"{name:16s} {code[5:]:>4s}   (no metrics; see {name}.log)")
PY
