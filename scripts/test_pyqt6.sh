#!/usr/bin/env bash
# The GUI tests again under PyQt6 (issue 18): a second environment, .venv-pyqt6, with the
# same pins as requirements/lock.txt except the Qt binding (requirements/pyqt6.txt), then
# tests/widgets under Xvfb. CI runs it after the main suite (.ci/run).
#
#     bash scripts/test_pyqt6.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v xvfb-run >/dev/null || bash scripts/install_system_deps.sh
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
venv=.venv-pyqt6
stamp=$venv/.weakseg-lock-$(sha256sum requirements/lock.txt requirements/pyqt6.txt setup.cfg setup.py | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x $venv/bin/python ] || "$python" -m venv $venv
  echo "installing the PyQt6 environment into $venv (first run: about 2 minutes)"
  grep -v -i '^pyqt5' requirements/lock.txt > $venv/lock-without-pyqt5.txt
  $venv/bin/python -m pip install -q --disable-pip-version-check \
    -r $venv/lock-without-pyqt5.txt -r requirements/pyqt6.txt 2>&1 | grep -v "^WARNING: Location" || true
  $venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 \
    | grep -v "^WARNING: Location" || true
  $venv/bin/python -c "import PyQt6, napari_weakseg, napari"
  if $venv/bin/python -c "import PyQt5" 2>/dev/null; then
    echo "test_pyqt6.sh: PyQt5 is importable in $venv; the run would not test PyQt6" >&2
    exit 1
  fi
  rm -f $venv/.weakseg-lock-*
  touch "$stamp"
fi
export QT_API=pyqt6 QT_QPA_PLATFORM=xcb OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONDONTWRITEBYTECODE=1
$venv/bin/python -c "import qtpy; assert qtpy.API_NAME == 'PyQt6', qtpy.API_NAME; print('Qt binding:', qtpy.API_NAME, qtpy.QT_VERSION)"
exec xvfb-run -a -s "-screen 0 1600x1000x24" $venv/bin/python -m pytest tests/widgets "$@"
