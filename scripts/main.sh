#!/usr/bin/env bash
# Set up (if needed) and run flowmend's main job on the embedded default model.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
exec flowmend demo "$@"
