#!/usr/bin/env bash
# Create .venv (Python 3.11) with the pinned packages of requirements/lock.txt and the
# plugin installed in editable mode. Does nothing when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
stamp=.venv/.weakseg-lock-$(sha256sum requirements/lock.txt setup.cfg setup.py | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
echo "installing pinned Python packages into .venv (first run: about 2 minutes)"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/lock.txt 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import napari_weakseg, torch, napari" 
rm -f .venv/.weakseg-lock-*
touch "$stamp"
