#!/usr/bin/env bash
# `make gpu-check`: one command from a lent GPU machine to figures. Gathers GPU facts, trains the
# full-size random SD1.5 LoRA at 512 px in bf16 with SDPA for a fixed number of steps with our
# trainer and with the bare loop, and prints one JSON (s/step, images/s, peak VRAM, ratio);
# the work is in scripts/gpu_check.py. Sized for 8 minutes on an H200 (not yet run on one).
#
#   bash scripts/gpu-check.sh [--dry-run] [gpu_check.py options]   (GPU_CHECK_DRY=1 = --dry-run)
#   bash scripts/gpu-check.sh --fetch-wheels     (here, with network: the wheels to carry)
#
# The lent machine has python3 (3.12) with torch, transformers, peft, accelerate, safetensors but
# no diffusers and none of our other runtime packages, and no network: --fetch-wheels downloads
# those (versions from requirements/lock-gpu.txt, cp312 manylinux wheels, no deps) into .whl/,
# which is gitignored and carried with the run; where python lacks our packages this script
# installs .whl/ into a private --target folder first. Dry mode runs on CPU with the tiny model (CI).
# On a lent machine (device tool): here `bash scripts/gpu-check.sh --fetch-wheels`, then
#   run(command="bash scripts/gpu-check.sh --json $OUT/gpu-check.json", carry=[".whl"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
LOCK=requirements/lock-gpu.txt
# coupling: packages of the lock that the lent machine lacks (its package list in
# ../.library/device/KINDS.md, read 2026-12-04), plus typer: entrypoint/cli.py needs typer>=0.29.
CARRY=(annotated-types cel-python diffusers google-re2 httpcore2 httpx2 hvac importlib-metadata
       jmespath lark lazy-importer opacus pendulum pydantic pydantic-core truststore
       typing-inspection tzdata typer)

if [[ "${1:-}" == --fetch-wheels ]]; then
  pins=()
  for name in "${CARRY[@]}"; do
    pin=$(grep -iE "^${name//-/[-_.]}==" "$LOCK" | cut -d' ' -f1) \
      || { echo "gpu-check: $name is not in $LOCK" >&2; exit 2; }
    pins+=("$pin")
  done
  mkdir -p .whl
  # GPU_CHECK_PYVER: the target machine's Python (3.12 on the lent H200).
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_CHECK_PYVER:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
  echo "gpu-check: $(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/ (carry it)" >&2
  exit 0
fi

args=("$@")
if [[ "${GPU_CHECK_DRY:-0}" == 1 ]]; then args=(--dry-run "${args[@]}"); fi
# Only where our packages are missing (the lent machine), never over a working venv.
if ! "$PYTHON" -c "import diffusers, hvac, celpy" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  site="${GPU_CHECK_SITE:-/tmp/gpu-check-site}"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
exec "$PYTHON" scripts/gpu_check.py "${args[@]}"
