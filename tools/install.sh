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
