#!/usr/bin/env bash
# Issue 9 on nvidia-h200-x2: GRPO on a widened deepseek_v3_tiny (TE spec, bf16) gives the same
# losses at TP=2, PP=2, EP=2, DP=2 and TP=2+SP with EP=2 as at TP=PP=EP=1 over 5 steps, resumes
# across layouts, and reports training throughput per GPU.
#
#   bash tools/device/multigpu_grpo.sh        (megatron-core + TE staged in /tmp/site first)
#
# 1. record   (1 GPU)  rollouts + initial weights of 5 steps  -> /tmp/mg/record
#             rewards rewritten so every group has signal (an untrained model earns none)
# 2. base     (GPU 0)  bf16 replay at TP=PP=EP=1: the reference
#    fp32     (GPU 1)  the same replay in fp32, concurrently: measures bf16 rounding (tolerance)
# 3. tp2 pp2 ep2 dp2 tp2ep2 (2 GPUs, one after another): replays at each layout;
#    tp2 and ep2 also save a checkpoint at step 2
# 4. pp2_resumed (2 GPUs) resumes ep2's step-2 checkpoint at PP=2 (distributed optimizer
#    resharded from DP=2 to DP=1); tp1_resumed (1 GPU) resumes tp2's at TP=1
# 5. table (printed last, also $OUT/table.txt): per run max |loss diff| and max relative
#    grad-norm diff vs base over its steps, verdict against the bf16 tolerance, and train
#    tokens/s per GPU (median of steps 2-5). The tolerance argument is in multigpu_grpo.py.
#
# Every run is capped (RUN_TIMEOUT s) and nothing new starts after DEADLINE s, so the table
# always prints within the 600 s device limit. LAYOUTS selects a subset of step 3.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
ROOT=/tmp/mg; rm -rf "$ROOT"; mkdir -p "$ROOT"
STEPS=${STEPS:-5}; RUN_TIMEOUT=${RUN_TIMEOUT:-150}; DEADLINE=${DEADLINE:-450}
LAYOUTS=${LAYOUTS:-"tp2 pp2 ep2 dp2 tp2ep2"}
T0=$SECONDS
WIDE="model=deepseek_v3_tiny model.spec=te model.hidden_size=1024 model.ffn_hidden_size=2048
  model.num_attention_heads=16 model.q_lora_rank=384 model.kv_lora_rank=256 model.qk_head_dim=64
  model.qk_pos_emb_head_dim=32 model.v_head_dim=64 model.num_experts=16 model.moe_ffn_hidden_size=512
  model.moe_shared_expert_intermediate_size=512 model.moe_router_topk=4"
COMMON="stage=r1_zero $WIDE trainer.progress=false trainer.plots=false trainer.max_steps=$STEPS
  trainer.global_batch_size=128 trainer.micro_batch_size=16 rl.group_size=8 rl.ppo_epochs=2
  rl.kl_beta=0.01 rl.entropy_coef=0.01 optim.decay_steps=$((2 * STEPS)) optim.warmup_steps=2
  rollout.max_tokens=64 evaluation.k=1 evaluation.max_tokens=4 data.synthetic.num_train=1024
  data.synthetic.num_test=4 data.seq_length=256 trainer.save_interval=0"
REPLAY="rl.replay_dir=$ROOT/record trainer.init_from=$ROOT/record/init"

train() {  # train NAME NPROC GPUS overrides...
  local name=$1 n=$2 gpus=$3; shift 3
  if (( SECONDS - T0 > DEADLINE )); then echo "$name skipped (deadline)" | tee -a "$OUT/status.txt"; return 1; fi
  local launch=(python3 -m r1mega.cli.train)
  (( n > 1 )) && launch=(python3 -m torch.distributed.run --nproc-per-node "$n" --master-port $((29500 + RANDOM % 1000)) -m r1mega.cli.train)
  local t=$SECONDS
  # shellcheck disable=SC2086
  CUDA_VISIBLE_DEVICES=$gpus timeout -k 10 "$RUN_TIMEOUT" "${launch[@]}" $COMMON "$@" \
    hydra.run.dir="$ROOT/$name" > "$ROOT/$name.log" 2>&1
  local rc=$?
  echo "$name exit=$rc ${n}proc gpus=$gpus $((SECONDS - t))s" | tee -a "$OUT/status.txt"
  return $rc
}

nvidia-smi --query-gpu=name,memory.used --format=csv > "$OUT/status.txt" 2>&1
train record_run 1 0 trainer.precision.dtype=bf16 rl.record_dir="$ROOT/record" &&
  python3 tools/device/multigpu_grpo.py vary "$ROOT/record" 8 | tee -a "$OUT/status.txt"
train base 1 0 trainer.precision.dtype=bf16 $REPLAY &
train fp32 1 1 trainer.precision.dtype=fp32 $REPLAY &
wait
declare -A LAYOUT=([tp2]="parallel.tp=2 trainer.save_interval=2" [pp2]="parallel.pp=2"
  [ep2]="parallel.ep=2 trainer.save_interval=2" [dp2]="" [tp2ep2]="parallel.tp=2 parallel.ep=2")
for name in $LAYOUTS; do
  # shellcheck disable=SC2086
  train "$name" 2 0,1 trainer.precision.dtype=bf16 $REPLAY ${LAYOUT[$name]}
done
resume() {  # resume NAME FROM NPROC GPUS overrides...: continue FROM's step-2 checkpoint
  local name=$1 from=$2; shift 2
  local it="$ROOT/$from/checkpoints/iter_0000002"
  [ -d "$it" ] || { echo "$name skipped (no $it)" | tee -a "$OUT/status.txt"; return 1; }
  mkdir -p "$ROOT/${name}_ckpt" && cp -r "$it" "$ROOT/${name}_ckpt/"
  local n=$1 gpus=$2; shift 2
  train "$name" "$n" "$gpus" trainer.precision.dtype=bf16 $REPLAY trainer.checkpoint_dir="$ROOT/${name}_ckpt" "$@"
}
resume pp2_resumed ep2 2 0,1 parallel.pp=2
resume tp1_resumed tp2 1 0
echo "total $((SECONDS - T0))s" | tee -a "$OUT/status.txt"

python3 tools/device/multigpu_grpo.py table "$ROOT" > "$OUT/table.txt" 2>&1
cp "$ROOT/comparison.json" "$OUT/" 2>/dev/null
tar czf "$OUT/multigpu_runs.tgz" -C "$ROOT" --exclude='*/checkpoints' --exclude='*_ckpt' --exclude='record/init' . 2>/dev/null
cat "$OUT/status.txt"
cat "$OUT/table.txt"
