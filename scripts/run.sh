#!/usr/bin/env bash
# README command 1: napari with the WeakSeg panel docked and the synthetic sample loaded.
# Without a display it says so and runs the headless demo instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "No display found: running the headless demo (weakseg demo) instead of napari."
  echo "For the GUI on a virtual screen: xvfb-run -a .venv/bin/python -m napari_weakseg.launch"
  exec .venv/bin/weakseg demo "$@"
fi
exec .venv/bin/python -m napari_weakseg.launch "$@"
