#!/usr/bin/env bash
# Bisect a Megatron-vs-vLLM log-prob disagreement on a dense model: the same check on a 4-layer
# Qwen2-1.5B-shaped model, then with one feature turned off at a time (tied embeddings, QKV bias,
# grouped-query attention, rope base). The variant whose delta collapses names the culprit.
#   bash tools/device/vllm_variants.sh            (wheels installed in /tmp/site)
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
base="model.num_layers=4"
run() {  # tag overrides...
  local tag=$1; shift
  python3 tools/device/vllm_check.py logprobs --model qwen2_5_1_5b --tag "$tag" --hf-check --out "$OUT" \
    --override $base "$@" > "$OUT/var_$tag.log" 2>&1
  echo "$tag exit=$? $(grep -h '^THREEWAY' "$OUT/var_$tag.log")"
}
run q4
run q4_untied model.tie_embeddings=false
run q4_nobias model.add_qkv_bias=false
run q4_mha model.num_query_groups=12
run q4_rope1e4 model.rotary_base=10000.0
run q4_vocab512 model.vocab_size=512
