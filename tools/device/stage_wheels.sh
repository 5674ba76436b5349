#!/usr/bin/env bash
# Copy one carried wheel part into /tmp/wheelhouse on the device machine (run once per part,
# in back-to-back `run` calls while the machine is warm), and on the last part install them.
#   bash tools/device/stage_wheels.sh .wheelhouse/p00            # copy
#   bash tools/device/stage_wheels.sh .wheelhouse/p05 --install  # copy + install into /tmp/site
set -euo pipefail
part=$1
mkdir -p /tmp/wheelhouse
cp "$part"/* /tmp/wheelhouse/
echo "staged $(ls "$part" | wc -l) files from $part; wheelhouse has $(ls /tmp/wheelhouse | wc -l)"
if [ "${2:-}" = "--install" ]; then
  bash /tmp/wheelhouse/install.sh /tmp/site
  if ls .wheelhouse/extra/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .wheelhouse/extra/*.whl
  fi
  PYTHONPATH=/tmp/site python3 -c "import megatron.core, transformer_engine, hydra; print('megatron-core', megatron.core.__version__, 'TE', transformer_engine.__version__)"
fi
