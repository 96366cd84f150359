"""Build hook only; the metadata lives in setup.cfg.

The model zoo stays at the repository root (``models/NAME/``, where the scripts and the docs
point) and is copied into the wheel as package data, ``napari_weakseg/models/NAME/``, so an
installed copy finds it with ``importlib.resources`` wherever pip put the package (``--user``,
``--target``, a venv); see ``napari_weakseg/zoo.py``. Editable installs and source checkouts
read ``models/`` in place.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ZOO = Path(__file__).resolve().parent / "models"
PACKAGE_ZOO = ("napari_weakseg", "models")


def _zoo_files():
    if not ZOO.is_dir():
        return []
    return sorted(p for p in ZOO.rglob("*")
                  if p.is_file() and not any(part.startswith((".", "__pycache__"))
                                             for part in p.relative_to(ZOO).parts))


class BuildPyWithZoo(build_py):
    """``build_py`` that also copies every file under ``models/`` into the package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs read models/ in the checkout
        for source in _zoo_files():
            target = Path(self.build_lib, *PACKAGE_ZOO, source.relative_to(ZOO))
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [str(Path(self.build_lib, *PACKAGE_ZOO, p.relative_to(ZOO)))
                          for p in _zoo_files()]


setup(cmdclass={"build_py": BuildPyWithZoo})
