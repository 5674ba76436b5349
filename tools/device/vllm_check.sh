#!/usr/bin/env bash
# GPU checks of rollout.engine=vllm (see tools/device/vllm_check.py for what each one asserts).
# Assumes megatron-core + TE + vllm 0.26.0 wheels are installed in /tmp/site (docs/vllm.md).
#   bash tools/device/vllm_check.sh                     # all steps (about 10-15 min on one H200)
#   bash tools/device/vllm_check.sh qwen dsv3            # some steps: bw qwen dsv3 dsv3_mla512 fp8 grpo separate
# Logs and JSON under $OUT; one short table printed last.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
steps=${*:-bw qwen dsv3 dsv3_mla512 fp8 grpo}
MLA512="model.kv_lora_rank=512 model.qk_pos_emb_head_dim=64 model.qk_head_dim=128 model.v_head_dim=128"
FP8DIMS="model.q_lora_rank=128 model.moe_ffn_hidden_size=128 model.moe_shared_expert_intermediate_size=128"
py=python3
status() { echo "$1 exit=$2" | tee -a "$OUT/vllm_status.txt"; }
python3 -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())" \
  2>&1 | tee "$OUT/vllm_versions.txt"
for s in $steps; do
  case $s in
    bw) $py tools/device/vllm_check.py bandwidth --out "$OUT" > "$OUT/bw.log" 2>&1; status bw $? ;;
    qwen) $py tools/device/vllm_check.py logprobs ${CHECK_ARGS:-} --model qwen2_5_1_5b --throughput --out "$OUT" \
            > "$OUT/qwen.log" 2>&1; status qwen $? ;;
    dsv3) $py tools/device/vllm_check.py logprobs ${CHECK_ARGS:-} --model deepseek_v3_tiny --out "$OUT" \
            > "$OUT/dsv3.log" 2>&1; status dsv3 $? ;;
    dsv3_mla512) $py tools/device/vllm_check.py logprobs ${CHECK_ARGS:-} --model deepseek_v3_tiny --tag dsv3_tiny_mla512 \
            --override $MLA512 --out "$OUT" > "$OUT/dsv3_mla512.log" 2>&1; status dsv3_mla512 $? ;;
    fp8) $py tools/device/vllm_check.py logprobs ${CHECK_ARGS:-} --model deepseek_v3_tiny --tag dsv3_tiny_mla512_fp8 --fp8 \
            --override $MLA512 $FP8DIMS --out "$OUT" > "$OUT/fp8.log" 2>&1; status fp8 $? ;;
    separate) $py tools/device/vllm_check.py logprobs ${CHECK_ARGS:-} --model qwen2_5_1_5b --separate --tag qwen_separate \
            --out "$OUT" > "$OUT/separate.log" 2>&1; status separate $? ;;
    grpo) $py -m r1mega.cli.train stage=reasoning_rl model=deepseek_v3_tiny model.spec=te $MLA512 \
            trainer.precision.dtype=bf16 trainer.progress=false rollout=vllm rollout.vllm.enforce_eager=true \
            rollout.vllm.gpu_memory_utilization=0.3 trainer.max_steps=${RL_STEPS:-4} trainer.global_batch_size=128 \
            trainer.micro_batch_size=32 rl.group_size=8 rl.rollout_is_correction=tis rollout.max_tokens=96 \
            evaluation.k=2 data.synthetic.num_test=32 data.seq_length=160 hydra.run.dir=/tmp/runs/grpo_vllm \
            > "$OUT/grpo_vllm.log" 2>&1; status grpo $?
          cp /tmp/runs/grpo_vllm/metrics.jsonl "$OUT/grpo_vllm.metrics.jsonl" 2>/dev/null ;;
    *) echo "unknown step $s" ;;
  esac
done
for f in "$OUT"/*.log; do  # the error, if any, of each failed step
  grep -q "^RESULT\|^CHECKS" "$f" || { echo "== tail of $f"; tail -n 25 "$f"; }
done
echo "================ summary"
cat "$OUT/vllm_status.txt"
grep -h "^RESULT\|^CHECKS\|^UNLOADED" "$OUT"/*.log
python3 - <<'PY'
import json, os
out = os.environ.get("OUT", "/tmp/out")
try:
    rows = [json.loads(l) for l in open(f"{out}/grpo_vllm.metrics.jsonl")]
except OSError:
    raise SystemExit(0)
keys = ["reward_mean", "mismatch_kl_k3", "mismatch_is_ratio_mean", "actor_ratio_max", "time_rollout", "time_sync",
        "time_train", "rollout_tokens_per_s"]
print("grpo step " + " ".join(f"{k[:14]:>14s}" for k in keys))
for r in rows:
    print(f"{r['step']:9d} " + " ".join(f"{(r.get(k) if r.get(k) is not None else float('nan')):14.5g}" for k in keys))
print("mismatch keys:", sorted(k for k in rows[-1] if k.startswith("mismatch")))
PY
