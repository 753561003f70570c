#!/usr/bin/env bash
# Set up (if needed) and run flowmend's main job on the embedded default model: one closed-loop
# repair of the canonical plan-then-code seed on a HumanEval task. Extra arguments go to
# `flowmend repair` (e.g. --task humaneval/HumanEval/0 --iterations 4).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
exec flowmend repair examples/workflows/plan_then_code.py \
    --task humaneval/HumanEval/2 --iterations 2 --proposals 3 --max-tokens 256 "$@"
