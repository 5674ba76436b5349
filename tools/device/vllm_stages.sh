#!/usr/bin/env bash
# Recipe stages on rollout=vllm (issue 7, deliverable 3): a short cold-start SFT of the tiny MoE
# (MLA dims vLLM supports), then stage=eval with vLLM and with the built-in engine (the two
# pass@1 must agree within sampling noise), stage=rejection_sampling and stage=distill_generate
# with vLLM. Wheels in /tmp/site. Prints a table last; logs under $OUT.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; R=/tmp/runs_stages
MLA512="model.kv_lora_rank=512 model.qk_pos_emb_head_dim=64 model.qk_head_dim=128 model.v_head_dim=128"
base="model=deepseek_v3_tiny model.spec=te $MLA512 trainer.precision.dtype=bf16 trainer.progress=false
      data.synthetic.num_train=2000 data.synthetic.num_test=64 data.seq_length=160 rollout.max_tokens=96"
V="rollout=vllm rollout.vllm.enforce_eager=true rollout.vllm.gpu_memory_utilization=0.3"
CUR="curation.max_prompts=32 curation.require_correct=false curation.filters.format_mode=none curation.filters.drop_truncated=false"
step() { local name=$1; shift; python3 -m r1mega.cli.train "$@" hydra.run.dir=$R/$name > "$OUT/$name.log" 2>&1; echo "$name exit=$?" | tee -a "$OUT/stages_status.txt"; }
step cold stage=sft $base trainer.max_steps=${SFT_STEPS:-300} optim.lr=3e-3 trainer.save_interval=0
step eval_vllm stage=eval $base $V trainer.init_from=$R/cold/checkpoints evaluation.k=8
step eval_builtin stage=eval $base trainer.init_from=$R/cold/checkpoints evaluation.k=8
step rs_vllm stage=rejection_sampling $base $V trainer.init_from=$R/cold/checkpoints $CUR
step distill_vllm stage=distill_generate $base $V trainer.init_from=$R/cold/checkpoints $CUR
tar czf "$OUT/stages_runs.tgz" -C $R . 2>/dev/null
for f in "$OUT"/*.log; do grep -q "Traceback\|error:" "$f" && { echo "== tail of $f"; tail -n 15 "$f"; }; done
python3 - <<'PY'
import json, os, glob
R = "/tmp/runs_stages"
print(open(os.path.join(os.environ.get("OUT", "/tmp/out"), "stages_status.txt")).read())
for name in ("eval_vllm", "eval_builtin"):
    try:
        e = json.load(open(f"{R}/{name}/eval.json"))
        print(f"{name:14s} n={e['n_questions']} pass@1={e['pass@1']:.3f} pass@8={e.get('pass@8', float('nan')):.3f} "
              f"cons@8={e.get('cons@8', float('nan')):.3f} greedy={e['greedy']:.3f} len={e['mean_response_length']:.1f}")
    except OSError as err:
        print(name, "no eval.json", err)
for name in ("rs_vllm", "distill_vllm"):
    files = glob.glob(f"{R}/{name}/**/*.jsonl", recursive=True)
    n = sum(sum(1 for _ in open(f)) for f in files)
    print(f"{name:14s} jsonl files={len(files)} records={n}")
    for f in files[:1]:
        rec = json.loads(open(f).readline() or "{}")
        print("  first record keys:", sorted(rec)[:12])
PY
