"""The layering of ``docs/architecture.md``, read from the source with :mod:`ast` (every
``import`` — module level, inside functions and under ``TYPE_CHECKING`` — counts).

Stages, each importing only from the stages before it (and from itself):

    io ← store ← weak ← nets, methods ← training, datasets, inference ← evaluation ← faces

with the core utilities (errors, schema, pre-/post-processing, zoo, synthetic data, states,
runtime helpers, layer-metadata keys, option declarations) importable from everywhere and importing only each
other and ``io``. Besides the order: ``inference`` never imports ``training`` or the store;
``nets`` never imports ``methods`` (methods sit on the networks); ``datasets`` imports only
``io``, the weak labels, the core utilities (schema, pre-processing, …) and the volume type of
``training.data`` (``training.sources`` reads the datasets, not the other way round), and
``inference`` does not import it; nothing but the widgets and the napari launcher imports Qt
or napari; ``io``, the store, the weak labels and the core utilities that napari loads at
start import torch only inside functions.

Size: a module of more than :data:`MAX_LINES` lines says why in its docstring (a line with
``Size:``), so that a long module is a decision, not an accident.

An arrow that breaks a rule today and is not worth the risk of moving now is listed in
:data:`ALLOWED` with the reason; the test fails when a listed arrow disappears, so the list
only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "napari_weakseg"

CORE = {"errors", "schema", "preprocess", "postprocess", "tta", "zoo", "synthetic", "states",
        "runtime", "layer_meta", "fields"}
#: stage rank of each top-level part of the package (core utilities: see CORE)
STAGES = {
    "io": 0,
    "store": 1,
    "weak": 2,
    "nets": 3, "methods": 3,
    "training": 4, "datasets": 4, "inference": 4,
    "evaluation": 5,
    "cli": 6, "widgets": 6, "plugin": 6, "launch": 6, "__main__": 6, "__init__": 6,
}
#: (importer part, imported part) pairs forbidden although their ranks would allow them
FORBIDDEN_SIBLINGS = {("inference", "training"), ("inference", "datasets"),
                      ("nets", "methods")}
#: what ``datasets`` may import besides itself and the core utilities: parts, and modules
DATASETS_MAY_IMPORT = {"io", "weak"}
DATASETS_MAY_IMPORT_MODULES = {"napari_weakseg.training.data"}
#: a module longer than this says why in its docstring (a line containing "Size:")
MAX_LINES = 450
GUI = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy",
       "superqt"}
GUI_ALLOWED = {"widgets", "launch"}
#: parts whose modules must not import torch at module level (napari starts fast)
NO_TOP_LEVEL_TORCH = {"io", "store", "weak", "__init__", "plugin", "schema", "errors",
                      "states", "runtime", "layer_meta", "zoo", "synthetic", "postprocess",
                      "tta", "fields"}

#: importer module → imported part: known arrows against the rules, with the reason
ALLOWED = {
    # project folders among the export's sources are opened here; building the cohort in
    # the CLI/panel instead (issue 19) changes the export's public API: left for later
    ("napari_weakseg.inference.export.cohort", "store"),
    # the store converts the WSL4MIS/our annotation encodings on save/export (issue 19:
    # convert only at the importers/exporters); since the split of store/project.py (issue
    # 19) the arrow starts at store/annotations.py, store/importers.py (CLASS_KINDS) and
    # store/exporters.py
    ("napari_weakseg.store.annotations", "weak"),
    ("napari_weakseg.store.importers", "weak"),
    ("napari_weakseg.store.exporters", "weak"),
    # the trainer's validation Dice (evaluation.metrics is pure numpy; moving the metrics
    # below training is a separate change)
    ("napari_weakseg.training.trainer", "evaluation"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _part(module: str) -> str:
    """``napari_weakseg.X...`` → ``X`` (``__init__`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    """``(imported module, line, module level?)`` for every import of the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from . import x": x is a module, or a name defined by the package
            targets = [target] if node.module else \
                [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target
                 for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            yield target, node.lineno, id(node) in top_level


def _all_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for target, line, top in _imports(path):
            yield path, module, target, line, top


def _rank(part: str) -> int | None:
    return None if part in CORE else STAGES[part]


def _violations() -> dict[tuple[str, str], str]:
    found = {}
    for path, module, target, line, _ in _all_imports():
        if not target.startswith("napari_weakseg.") and target != "napari_weakseg":
            continue
        source, dest = _part(module), _part(target)
        if source == dest:
            continue
        where = f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}"
        if source in CORE:
            if dest not in CORE and dest != "io":
                found[(module, dest)] = where
            continue
        if dest in CORE:
            continue
        if _rank(dest) > _rank(source) or (source, dest) in FORBIDDEN_SIBLINGS:
            found[(module, dest)] = where
        elif source == "inference" and dest == "store":
            found[(module, dest)] = where
    return found


def test_every_part_of_the_package_has_a_stage():
    parts = {_part(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts - CORE - set(STAGES) == set(), "add the new module to a stage (and the docs)"


def test_stages_import_only_from_earlier_stages():
    found = _violations()
    unexpected = {key: where for key, where in found.items() if key not in ALLOWED}
    assert not unexpected, "imports against docs/architecture.md:\n" + "\n".join(
        sorted(unexpected.values()))


def test_allowed_exceptions_still_exist():
    """An exception that was fixed is taken off the list (the list only shrinks)."""
    gone = sorted(set(ALLOWED) - set(_violations()))
    assert not gone, f"remove from ALLOWED (no longer imported): {gone}"


def test_only_widgets_and_the_launcher_import_qt_or_napari():
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: {target}"
           for path, module, target, line, _ in _all_imports()
           if target.split(".")[0] in GUI and _part(module) not in GUI_ALLOWED]
    assert not bad


@pytest.mark.parametrize("forbidden", ["torch"])
def test_fast_start_modules_import_torch_only_in_functions(forbidden):
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: {target}"
           for path, module, target, line, top in _all_imports()
           if top and target.split(".")[0] == forbidden
           and _part(module) in NO_TOP_LEVEL_TORCH]
    assert not bad


def test_datasets_import_only_io_weak_the_core_and_training_data():
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line}: {target}"
           for path, module, target, line, _ in _all_imports()
           if _part(module) == "datasets" and target.startswith("napari_weakseg.")
           and _part(target) not in CORE | DATASETS_MAY_IMPORT | {"datasets"}
           and target not in DATASETS_MAY_IMPORT_MODULES]
    assert not bad, "datasets may import io, weak, the core utilities and training.data:\n" \
        + "\n".join(bad)


def _size_reason(text: str) -> str | None:
    """The docstring line that says why a long module is long, or ``None``."""
    docstring = ast.get_docstring(ast.parse(text)) or ""
    return next((line for line in docstring.splitlines() if "Size:" in line), None)


def test_long_modules_say_why():
    """No module of the package over :data:`MAX_LINES` lines without a reason at its top
    (issue 19): split it, or write ``Size: <why>`` in its docstring."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tests" in path.relative_to(PACKAGE).parts:
            continue
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_LINES and _size_reason(text) is None:
            unexplained.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
    assert not unexplained, (f"modules over {MAX_LINES} lines without a 'Size:' line in their "
                             "docstring (split them or say why):\n" + "\n".join(unexplained))


def test_the_size_check_reads_docstrings():
    assert _size_reason('"""Panel.\n\nSize: one Qt panel."""\nx = 1\n') == "Size: one Qt panel."
    assert _size_reason('"""Panel."""\n# Size: not in the docstring\n') is None
    assert _size_reason("x = 1\n") is None


def test_the_checker_sees_a_forbidden_arrow():
    """The import reader resolves relative imports (a broken reader passes everything)."""
    path = PACKAGE / "inference" / "predictor.py"
    targets = {t for t, _, _ in _imports(path)}
    assert any(t.startswith("napari_weakseg.") for t in targets)
    sample = PACKAGE / "inference" / "export" / "cohort.py"
    assert "napari_weakseg.store.project" in {t for t, _, _ in _imports(sample)}
