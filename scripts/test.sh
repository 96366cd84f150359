#!/usr/bin/env bash
# README command 2: the whole test suite, headless, under a virtual screen (Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v xvfb-run >/dev/null || bash scripts/install_system_deps.sh
bash scripts/setup_env.sh
export QT_QPA_PLATFORM=xcb OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONDONTWRITEBYTECODE=1
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest "$@"
