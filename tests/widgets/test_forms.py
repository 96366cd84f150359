"""The panels' option widgets are generated from the declaration (``napari_weakseg.fields``):
a widget per declared field with its label, range, step, unit, tooltip and ``None`` text,
and values that go back to the dataclass unchanged."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox

from napari_weakseg.fields import option_fields
from napari_weakseg.inference.export.options import ExportOptions
from napari_weakseg.training.config import TrainConfig
from napari_weakseg.widgets.forms import INT_LIMIT, OptionForm, create_widget, set_value, value

OPTIONS = [pytest.param(o, id=f"{cls.__name__}.{o.name}")
           for cls in (TrainConfig, ExportOptions) for o in option_fields(cls)]


@pytest.mark.parametrize("option", OPTIONS)
def test_a_widget_per_declared_field(qtbot, option):
    widget = create_widget(option)
    qtbot.addWidget(widget)
    assert widget.toolTip() == option.help
    if option.kind is bool:
        assert isinstance(widget, QCheckBox) and widget.text() == option.label
        assert widget.isChecked() == bool(option.default)
    elif option.choices is not None:
        assert isinstance(widget, QComboBox)
        data = [widget.itemData(i) for i in range(widget.count())]
        assert data == ([None] if option.nullable else []) + list(option.choices)
        if option.nullable:
            assert widget.itemText(0) == option.none_text
        if option.choice_labels:
            assert [widget.itemText(i) for i in range(widget.count())][-len(
                option.choice_labels):] == list(option.choice_labels)
    elif option.suggestions:
        assert isinstance(widget, QComboBox)
        assert [widget.itemText(i) for i in range(widget.count())] == list(option.suggestions)
    elif option.kind in (int, float) and option.nargs is None:
        assert isinstance(widget, QSpinBox if option.kind is int else QDoubleSpinBox)
        low = option.minimum if option.minimum is not None else -INT_LIMIT
        high = option.maximum if option.maximum is not None else INT_LIMIT
        assert (widget.minimum(), widget.maximum()) == (low, high)
        if option.step is not None:
            assert widget.singleStep() == option.step
        if option.decimals is not None:
            assert widget.decimals() == option.decimals
        assert widget.suffix() == option.suffix
        assert widget.specialValueText() == (option.none_text or "")
        if option.default is not None or option.none_text is not None:
            assert value(widget, option) == option.default
    else:
        assert isinstance(widget, QLineEdit)


@pytest.mark.parametrize("cls, stored", [
    (TrainConfig, {"iterations": 500, "batch_size": 4, "size": 64, "base_width": 8,
                   "val_every": 50, "threads": 2, "lr": 0.003, "max_seconds": 90.0,
                   "device": "cuda:1", "preview_every_s": None, "init_model": "m"}),
    (TrainConfig, {"lr": None, "max_seconds": None, "preview_every_s": 30.0,
                   "postprocessing": "largest", "preprocessing": "spacing"}),
    (ExportOptions, {"device": "mps", "postprocess": None, "probabilities": True,
                     "force": False, "qc_lowest": 3}),
    (ExportOptions, {"postprocess": "anatomy", "qc_report": False}),
])
def test_values_go_back_unchanged(qtbot, cls, stored):
    form = OptionForm(cls, list(stored))
    for widget in form.widgets.values():
        qtbot.addWidget(widget)
    form.set_values(**stored)
    assert form.values() == stored
    cls(**form.values())  # the dataclass takes them as they are


def test_minutes_are_shown_and_seconds_stored(qtbot):
    option = option_fields(TrainConfig, ["max_seconds"])[0]
    widget = create_widget(option)
    qtbot.addWidget(widget)
    widget.setValue(2.0)
    assert value(widget, option) == 120.0 and widget.suffix() == " min"
    set_value(widget, option, None)
    assert widget.value() == 0 and widget.text() == "no limit" and value(widget, option) is None


def _rows(layout: QFormLayout) -> dict[str, object]:
    rows = {}
    for row in range(layout.rowCount()):
        label = layout.itemAt(row, QFormLayout.LabelRole)
        field = layout.itemAt(row, QFormLayout.FieldRole)
        if field is None:
            field = layout.itemAt(row, QFormLayout.SpanningRole)
        text = label.widget().text() if label is not None else field.widget().text()
        rows[text] = field.widget()
    return rows


def test_the_train_panel_form_is_the_declaration(make_napari_viewer):
    from napari_weakseg.widgets import train as train_module
    from napari_weakseg.widgets.main import WeakSegWidget
    from napari_weakseg.widgets.workers import SynchronousExecutor

    # the dock widget is kept: a temporary would be collected, deleting the panel's fields
    widget = WeakSegWidget(make_napari_viewer(), executor=SynchronousExecutor())
    panel = widget.train_panel
    layout = panel.form["iterations"].parentWidget().layout()
    rows = _rows(layout)
    options = option_fields(TrainConfig, train_module.FORM_FIELDS)
    assert list(rows) == [o.label for o in options]
    assert [rows[o.label] for o in options] == [panel.form[o.name] for o in options]
    assert panel.fields["size"].minimum() == 16 and panel.fields["size"].singleStep() == 16
    assert panel.lr_box is panel.form["lr"] and panel.budget_box is panel.form["max_seconds"]
    assert panel.preview_box.value() == 15 and panel.device_combo.currentText() == "cpu"
    panel.set_hyperparameters(minutes=3, lr=0, preview=0)
    config = panel.config()
    assert (config.max_seconds, config.lr, config.preview_every_s) == (180.0, None, None)


def test_the_export_panel_options_are_the_declaration(make_napari_viewer):
    from napari_weakseg.widgets.export import CHECKS, ExportPanel

    panel = ExportPanel(make_napari_viewer())
    labels = {o.name: o.label for o in option_fields(ExportOptions)}
    assert {key: box.text() for key, box in panel.checks.items()} == \
        {key: labels[key] for key in CHECKS}
    assert panel.post_combo.itemText(0) == "As the model recommends"
    assert panel.options() == ExportOptions()
    panel.post_combo.setCurrentIndex(panel.post_combo.findData("none"))
    panel.checks["largest_component"].setChecked(True)  # the old box means 'largest'
    assert panel.post_combo.currentData() == "largest"
    panel.post_combo.setCurrentIndex(panel.post_combo.findData("anatomy"))
    assert not panel.checks["largest_component"].isChecked()
    assert panel.options() == ExportOptions(postprocess="anatomy")
