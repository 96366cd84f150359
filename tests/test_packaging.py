"""The built wheel carries the npe2 manifest, and npe2/napari see every contribution."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO)], check=True, capture_output=True)
    (path,) = out.glob("napari_weakseg-*.whl")
    return path


def test_wheel_contains_manifest_and_entry_points(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "napari_weakseg/napari.yaml" in names
        manifest = archive.read("napari_weakseg/napari.yaml").decode()
        assert manifest == (REPO / "napari.yaml").read_text()
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "napari-weakseg = napari_weakseg:napari.yaml" in text
    assert "weakseg = napari_weakseg.cli:main" in text
    assert not any(n.startswith("tests/") for n in names)
    zoo = [n for n in names if "/data/share/napari-weakseg/models/acdc-cine-pce/" in n]
    assert sorted(n.rsplit("/", 1)[1] for n in zoo) == ["README.md", "config.json",
                                                         "weights.pt"]


def test_installed_wheel_passes_npe2_validation(wheel, tmp_path):
    """Install the wheel into an empty target and validate its manifest, imports included."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
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
print(manifest.name, len(manifest.contributions.commands))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["napari-weakseg", "7"]


def test_npe2_validate_cli_on_installed_package():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-weakseg",
                             "--imports"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in (result.stdout + result.stderr).lower()


def test_napari_lists_reader_writer_sample_and_widget():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover()
    manifest = pm.get_manifest("napari-weakseg")
    contributions = manifest.contributions
    assert [r.filename_patterns for r in contributions.readers] == [["*.nii", "*.nii.gz"]]
    assert contributions.writers[0].layer_types == ["labels"]
    assert {s.key for s in contributions.sample_data} == {"cardiac", "cardiac_cine"}
    assert [(w.display_name, w.command) for w in contributions.widgets] == [
        ("WeakSeg", "napari-weakseg.weakseg_widget"),
        ("Weak annotations", "napari-weakseg.annotation_panel"),
        ("Batch export", "napari-weakseg.export_panel")]
    readers = list(pm.iter_compatible_readers(["case.nii.gz"]))
    assert any(r.plugin_name == "napari-weakseg" for r in readers)
