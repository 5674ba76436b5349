#!/usr/bin/env bash
# Copy one carried wheel part into a wheelhouse on the device machine (run once per part, in
# back-to-back `run` calls while the machine is warm), and on the last part install them.
#   bash tools/device/stage_wheels.sh .wheelhouse/p00                  # megatron-core + TE parts
#   bash tools/device/stage_wheels.sh .wheelhouse/p05 --install        # copy + install into /tmp/site
#   WHEELHOUSE=/tmp/wh-vllm bash tools/device/stage_wheels.sh .wheelhouse/vllm/p07 --install
# Each wheel list (built by ../shared/tools/wheel-parts) has its own install.sh, so each list
# gets its own wheelhouse folder; all install into /tmp/site.
set -euo pipefail
part=$1
house=${WHEELHOUSE:-/tmp/wheelhouse}
mkdir -p "$house"
cp "$part"/* "$house"/
echo "staged $(ls "$part" | wc -l) files from $part; $house has $(ls "$house" | wc -l)"
if [ "${2:-}" = "--install" ]; then
  bash "$house"/install.sh /tmp/site
  if ls .wheelhouse/extra/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .wheelhouse/extra/*.whl
  fi
  PYTHONPATH=/tmp/site python3 -c "import megatron.core, hydra; print('megatron-core', megatron.core.__version__)" || true
  PYTHONPATH=/tmp/site python3 -c "import transformer_engine; print('TE', transformer_engine.__version__)" 2>/dev/null || true
  PYTHONPATH=/tmp/site python3 -c "import vllm; print('vllm', vllm.__version__)" 2>/dev/null || true
fi
