#!/usr/bin/env bash
# Create .venv (if missing) and install videoccam for CPU work: torch 2.13.0, the package with its test
# extra, xtuner 0.2.0 without its dependencies, and the .pth hook that lets the stock `xtuner` CLI run on a
# CPU-only torch. Idempotent: a second run only checks. Extra arguments name extras, e.g.
#   bash tools/install.sh deepspeed demo
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="test"
for e in "$@"; do extras="$extras,$e"; done
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
$VPY -m pip install -q "torch==2.13.0"
$VPY -m pip install -q -e ".[$extras]"
$VPY -m pip install -q --no-deps "xtuner==0.2.0"
$VPY -m videoccam.xtuner_compat
$VPY - <<'PY'
import torch, transformers, mmengine, xtuner, peft, decord, tensorboard
print(f"videoccam env ready: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"mmengine {mmengine.__version__}, xtuner {xtuner.__version__}, peft {peft.__version__}")
PY
if [[ ",$extras," == *",deepspeed,"* ]]; then
  # DeepSpeed JIT-compiles its CPU shared-memory comm op (g++ + ninja from the venv) the first time a process
  # initialises DeepSpeed's comm: about 25-60 s on 2 cores. Build it now, into the torch extensions cache
  # (~/.cache/torch_extensions), instead of inside the first training run or test. A no-op on GPU machines.
  if ! out=$(PATH="$PWD/.venv/bin:$PATH" $VPY -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()" 2>&1)
  then
    echo "$out" >&2
    echo "error: DeepSpeed could not build its CPU comm op (needs g++ and the ninja in .venv/bin)" >&2
    exit 1
  fi
  echo "$out" | grep -v "Setting accelerator to CPU" || true
fi
