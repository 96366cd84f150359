"""Form widgets generated from the option declarations (:mod:`napari_weakseg.fields`).

One widget per declared option: a check box for a boolean (its text: the label), a combo
box for choices or suggestions, a spin box for a number (range, step, decimals, suffix and
the text shown for ``None`` from the declaration), a line edit otherwise; the declared help
is the tooltip. Values go in and out in the dataclass's units (``scale`` applied), so a
form's :meth:`OptionForm.values` can be passed to the dataclass as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit,
                            QSpinBox, QWidget)

from ..fields import Option, option_fields

#: a spin box without a declared bound
INT_LIMIT = 2**31 - 1


def create_widget(option: Option) -> QWidget:
    """The widget of one option, set to its default."""
    if option.kind is bool:
        widget = QCheckBox(option.label)
    elif option.choices is not None or option.suggestions:
        widget = QComboBox()
        if option.choices is not None:
            if option.nullable:
                widget.addItem(option.none_text or "", None)
            labels = option.choice_labels or option.choices
            for value, text in zip(option.choices, labels):
                widget.addItem(text, value)
        else:
            widget.addItems(list(option.suggestions))
    elif option.kind in (int, float) and option.nargs is None:
        widget = QSpinBox() if option.kind is int else QDoubleSpinBox()
        if option.decimals is not None:
            widget.setDecimals(option.decimals)
        low = option.minimum if option.minimum is not None else -INT_LIMIT
        high = option.maximum if option.maximum is not None else INT_LIMIT
        if option.kind is int:
            widget.setRange(int(low), int(high))
        else:
            widget.setRange(float(low), float(high))
        if option.step is not None:
            widget.setSingleStep(int(option.step) if option.kind is int else option.step)
        if option.suffix:
            widget.setSuffix(option.suffix)
        if option.none_text is not None:
            widget.setSpecialValueText(option.none_text)  # shown at the minimum
    else:
        widget = QLineEdit()
    widget.setToolTip(option.help)
    widget.setObjectName(option.name)
    set_value(widget, option, option.default)
    return widget


def value(widget: QWidget, option: Option) -> Any:
    """The widget's value as the dataclass stores it (``None`` where the form says so)."""
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentData() if option.choices is not None else widget.currentText()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        shown = widget.value()
        if option.none_text is not None and shown <= widget.minimum():
            return None
        return option.stored(shown)
    text = widget.text().strip()
    return (text or None) if option.nullable else text


def set_value(widget: QWidget, option: Option, stored: Any) -> None:
    """Show a stored value (``None``: the form's ``None`` text, or leave the widget)."""
    if isinstance(widget, QCheckBox):
        widget.setChecked(bool(stored))
    elif isinstance(widget, QComboBox):
        if option.choices is not None:
            index = widget.findData(stored)
        else:
            if stored is not None and widget.findText(stored) < 0:
                widget.addItem(stored)
            index = widget.findText(stored) if stored is not None else -1
        if index >= 0:
            widget.setCurrentIndex(index)
    elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        if stored is None:
            if option.none_text is not None:
                widget.setValue(widget.minimum())
            return
        shown = option.shown(stored)
        widget.setValue(int(shown) if isinstance(widget, QSpinBox) else float(shown))
    else:
        widget.setText("" if stored is None else str(stored))


class OptionForm:
    """The widgets of the declared options ``names`` of dataclass ``cls``, in that order:
    ``form[name]`` is the widget, ``form.options[name]`` its declaration."""

    def __init__(self, cls: type, names: Sequence[str]):
        self.options = {option.name: option for option in option_fields(cls, names)}
        self.widgets = {name: create_widget(option) for name, option in self.options.items()}

    def __getitem__(self, name: str) -> QWidget:
        return self.widgets[name]

    def add_rows(self, layout: QFormLayout, names: Sequence[str] | None = None) -> None:
        """A row per option: ``label  widget`` (a check box: the whole row)."""
        for name in names or self.widgets:
            widget = self.widgets[name]
            if isinstance(widget, QCheckBox):
                layout.addRow(widget)
            else:
                layout.addRow(self.options[name].label, widget)

    def values(self) -> dict[str, Any]:
        """Every option's stored value, by name."""
        return {name: value(widget, self.options[name])
                for name, widget in self.widgets.items()}

    def set_values(self, **stored: Any) -> None:
        for name, item in stored.items():
            set_value(self.widgets[name], self.options[name], item)


__all__ = ["OptionForm", "create_widget", "set_value", "value"]
