"""The wheel: built from a clean copy of the tree, it carries the npe2 manifest and the model
zoo as package data, requires no Qt binding, and npe2/napari see every contribution.

The wheel is built once per module (``python -m build --wheel --no-isolation``, offline;
about 5 s) from a copy of the files git tracks or would track, so stale ``build/`` folders
or files outside version control cannot leak into it.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari_weakseg" / "napari.yaml"
QT_BINDINGS = ("pyqt5", "pyqt6", "pyside2", "pyside6")


def _source_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [name for name in out.decode().split("\0") if name]


def _clean_copy(target: Path) -> Path:
    files = _source_files()
    if not files:  # not a git checkout: copy what a clean clone would hold
        ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                        "__pycache__", "test-artifacts", "*.pyc")
        shutil.copytree(REPO, target, ignore=ignore, symlinks=True)
        return target
    for name in files:
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in git
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            destination.symlink_to(source.readlink())
        elif source.is_file():
            shutil.copy2(source, destination)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = _clean_copy(tmp_path_factory.mktemp("src") / "napari-weakseg")
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                             "--outdir", str(out), str(source)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = out.glob("napari_weakseg-*.whl")
    return path


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_manifest_is_a_real_file_inside_the_package():
    """No git symlink (Windows checkouts turn those into text files)."""
    assert MANIFEST.is_file() and not MANIFEST.is_symlink()
    assert not (REPO / "napari.yaml").exists(), "one manifest, inside the package"


def test_wheel_contains_manifest_and_entry_points(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "napari_weakseg/napari.yaml" in names
        assert archive.read("napari_weakseg/napari.yaml").decode() == MANIFEST.read_text()
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        text = archive.read(entry_points).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "napari-weakseg = napari_weakseg:napari.yaml" in text
    assert "weakseg = napari_weakseg.cli:main" in text
    assert not any(n.startswith(("tests/", "models/", "benchmarks/")) for n in names)
    assert not any("/data/" in n for n in names), "no data_files outside the package"


def test_wheel_carries_every_zoo_file_as_package_data(wheel):
    """Whatever folders models/ holds, each file lands under napari_weakseg/models/."""
    expected = sorted("napari_weakseg/models/" + p.relative_to(REPO / "models").as_posix()
                      for p in (REPO / "models").rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts)
    assert any(name.endswith("/config.json") for name in expected)
    with zipfile.ZipFile(wheel) as archive:
        packaged = sorted(n for n in archive.namelist() if n.startswith("napari_weakseg/models/"))
        for name in expected:
            source = REPO / "models" / name.removeprefix("napari_weakseg/models/")
            assert archive.read(name) == source.read_bytes(), name
    assert packaged == expected


def test_wheel_metadata_requires_no_qt_binding(wheel):
    meta = _metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    unconditional = [r for r in requires if "extra ==" not in r]
    names = {r.split(";")[0].split("[")[0].strip().split(">")[0].split("=")[0].split("<")[0]
             .strip().lower() for r in unconditional}
    assert not names & set(QT_BINDINGS), unconditional
    assert {"psygnal", "pillow", "simpleitk", "torch"} <= names
    assert "h5py" not in names, "h5py is the wsl4mis extra"
    torch = next(r for r in unconditional if r.lower().startswith("torch"))
    assert "<" not in torch, f"{torch}: current torch releases must be allowed"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"pyqt5", "pyqt6", "wsl4mis", "testing"} <= extras
    assert any(r.startswith("PyQt5") and 'extra == "pyqt5"' in r for r in requires)
    assert any(r.startswith("PyQt6") and 'extra == "pyqt6"' in r for r in requires)
    classifiers = meta.get_all("Classifier") or []
    assert "Framework :: napari" in classifiers
    assert (meta.get("License-Expression") or meta.get("License")) == "BSD-3-Clause"


def test_lock_pins_exact_versions_and_keeps_the_cpu_torch():
    lines = [ln.strip() for ln in (REPO / "requirements" / "lock.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert all("==" in ln for ln in lines), [ln for ln in lines if "==" not in ln]
    pins = {ln.split("==")[0].lower(): ln.split("==")[1] for ln in lines}
    assert pins["torch"] == "2.13.0"
    assert "simpleitk" in pins and "pyqt5" in pins
    assert not any(name.startswith("nvidia") for name in pins)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into an empty ``--target`` folder (as ``--user`` installs do)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    return target


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter, outside the checkout, without the zoo override."""
    env = {k: v for k, v in os.environ.items() if k != "WEAKSEG_MODELS"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=cwd)


def test_installed_wheel_finds_zoo_and_passes_npe2_validation(installed):
    """The manifest validates with its imports, and the zoo is found inside the package."""
    target = installed
    script = f"""
import sys; sys.path.insert(0, {str(target)!r})
import importlib.metadata as md, napari_weakseg
from npe2 import PluginManifest
assert napari_weakseg.__file__.startswith({str(target)!r}), napari_weakseg.__file__
(dist,) = [d for d in md.distributions(path=[{str(target)!r}]) if d.metadata['Name'] == 'napari-weakseg']
(ep,) = [e for e in dist.entry_points if e.group == 'napari.manifest']
module, _, resource = ep.value.partition(':')
import importlib.resources as res
manifest = PluginManifest.from_file(str(res.files(module) / resource))
manifest.validate_imports()
from napari_weakseg.zoo import zoo_dir, zoo_models
assert str(zoo_dir()).startswith({str(target)!r}), zoo_dir()
models = zoo_models()
assert models and all((p / 'weights.pt').is_file() for p in models.values()), models
print(manifest.name, len(manifest.contributions.commands), ','.join(sorted(models)))
"""
    result = _run(script, installed)
    assert result.returncode == 0, result.stderr
    name, commands, models = result.stdout.split()
    assert (name, commands) == ("napari-weakseg", "7")
    assert set(models.split(",")) == {p.name for p in (REPO / "models").iterdir()
                                      if (p / "config.json").is_file()}


def test_installed_core_imports_without_any_qt_binding(installed):
    """With every Qt binding (and the optional h5py) made unimportable, the installed core
    imports and reads a volume; the WSL4MIS reader names the missing extra."""
    script = f"""
import sys; sys.path.insert(0, {str(installed)!r})
BLOCKED = ('PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'h5py')
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import numpy as np, tempfile, os
import napari_weakseg, napari_weakseg.io, napari_weakseg.store, napari_weakseg.weak.targets
import napari_weakseg.evaluation.metrics, napari_weakseg.cli, napari_weakseg.plugin
assert napari_weakseg.__file__.startswith({str(installed)!r})
from napari_weakseg.io import VolumeGeometry, read_any, write_volume
folder = tempfile.mkdtemp()
path = write_volume(os.path.join(folder, 'a.nii.gz'), np.zeros((2, 3, 4), np.float32),
                    VolumeGeometry.from_spacing((2, 3, 4), (2.0, 1.0, 1.0)))
assert read_any(path).data.shape == (2, 3, 4)
from napari_weakseg.io.wsl4mis import read_wsl4mis_h5
try:
    read_wsl4mis_h5(path)
except ImportError as exc:
    assert "napari-weakseg[wsl4mis]" in str(exc), exc
else:
    raise AssertionError('h5py was blocked')
print(sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED + ('qtpy', 'napari')))
"""
    result = _run(script, installed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_zoo_found_in_the_source_checkout(monkeypatch):
    from napari_weakseg.zoo import ZOO_ENV, zoo_dir, zoo_models

    monkeypatch.delenv(ZOO_ENV, raising=False)
    assert zoo_dir() == REPO / "models"
    assert "acdc-cine-pce" in zoo_models()
    monkeypatch.setenv(ZOO_ENV, str(REPO / "nowhere"))
    assert zoo_models() == {}


def test_npe2_validate_cli_on_installed_package():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-weakseg",
                             "--imports"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in (result.stdout + result.stderr).lower()
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_napari_lists_reader_writer_sample_widgets_and_menus():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover()
    manifest = pm.get_manifest("napari-weakseg")
    assert set(manifest.categories) == {"Segmentation", "Annotation"}
    contributions = manifest.contributions
    (reader,) = contributions.readers
    assert {"*.nii", "*.nii.gz", "*.nrrd", "*.mha", "*.mhd"} <= set(reader.filename_patterns)
    assert reader.accepts_directories
    assert contributions.writers[0].layer_types == ["labels"]
    assert {s.key for s in contributions.sample_data} == {"cardiac", "cardiac_cine"}
    assert [(w.display_name, w.command) for w in contributions.widgets] == [
        ("WeakSeg", "napari-weakseg.weakseg_widget"),
        ("Weak annotations", "napari-weakseg.annotation_panel"),
        ("Batch export", "napari-weakseg.export_panel")]
    menus = {menu: [item.command for item in items]
             for menu, items in contributions.menus.items()}
    assert menus == {"napari/layers/segment": ["napari-weakseg.weakseg_widget",
                                               "napari-weakseg.export_panel"],
                     "napari/layers/annotate": ["napari-weakseg.annotation_panel"]}
    for name in ("case.nii.gz", "case.nrrd", "case.mha"):
        readers = list(pm.iter_compatible_readers([name]))
        assert any(r.plugin_name == "napari-weakseg" for r in readers), name
