"""One declaration of every user-facing option: the CLI flags (argparse) and the panels'
form widgets (``widgets/forms.py``) are generated from it.

A dataclass field is user-facing when its ``metadata`` holds an :class:`Option` (declared
with :func:`option_field`): label (the form's text), one line of help (``--help`` and the
tooltip), the flag, the bounds, choices, unit and the text the form shows for ``None``.
:func:`option_fields` lists them in declaration order; :func:`add_arguments` turns them
into argparse options and :func:`values_from_args` back into the dataclass's values;
:func:`check_values` refuses wrong types, values below the declared minimum and unknown
choices. Qt-, napari- and torch-free.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import OptionError

#: the ``dataclasses.field`` metadata key of an :class:`Option`
METADATA_KEY = "weakseg_option"


@dataclass(frozen=True)
class Option:
    """One user-facing option of a configuration dataclass.

    Numbers are *shown* (typed after the flag, shown by the form) in the unit of ``suffix``
    and *stored* in the dataclass as shown × ``scale`` (``--minutes`` → ``max_seconds``:
    ``scale=60``). ``minimum``/``maximum``/``step`` are in the shown unit: ``minimum`` is
    refused below (:func:`check_values`; ``above_minimum``: the minimum itself too), and
    ``maximum`` only bounds the form. ``none_text``: what the form shows for ``None`` (the
    form's minimum stands for it). ``choices`` are enforced (``choice_labels``: their texts
    in the form); ``suggestions`` are only offered. ``parse``: a text → value function for
    the flag (``ValueError`` = a usage error). ``cli=False``: no flag (a form-only option).
    The rest is filled in by :func:`option_fields`: ``name``, ``kind`` (from the default or
    the annotation unless given), ``nullable`` (the default is ``None``) and ``default``.
    """

    label: str
    help: str
    flag: str | None = None
    kind: type | None = None
    minimum: float | None = None
    above_minimum: bool = False
    maximum: float | None = None
    step: float | None = None
    decimals: int | None = None
    choices: tuple[str, ...] | None = None
    choice_labels: tuple[str, ...] | None = None
    suggestions: tuple[str, ...] = ()
    suffix: str = ""
    none_text: str | None = None
    scale: float = 1
    nargs: int | None = None
    metavar: str | tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None
    cli: bool = True
    # filled by option_fields
    name: str = ""
    nullable: bool = False
    default: Any = None

    @property
    def cli_flag(self) -> str:
        """``--batch-size`` for ``batch_size`` unless another flag is declared."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        """The name in error messages: the field, with its flag when that differs."""
        derived = "--" + self.name.replace("_", "-")
        return self.name if self.cli_flag == derived or not self.cli else \
            f"{self.name} ({self.cli_flag})"

    def stored(self, shown: Any) -> Any:
        """The dataclass value of a shown value (× ``scale``)."""
        if shown is None or self.scale == 1:
            return shown
        return shown * self.scale

    def shown(self, stored: Any) -> Any:
        """The shown value of a stored one (÷ ``scale``)."""
        if stored is None or self.scale == 1:
            return stored
        return stored / self.scale


def option_field(default: Any, label: str, help: str, **declaration: Any):
    """A ``dataclasses.field`` with ``default`` that carries an :class:`Option`."""
    return dataclasses.field(default=default, metadata={
        METADATA_KEY: Option(label=label, help=help, **declaration)})


def _kind(field: dataclasses.Field, hints: dict[str, Any]) -> type | None:
    """``int``/``float``/``str``/``bool`` from the default, else from the annotation."""
    if field.default is not None and field.default is not dataclasses.MISSING:
        return type(field.default)
    hint = hints.get(field.name)
    members = [m for m in typing.get_args(hint) if m is not type(None)] or [hint]
    plain = [m for m in members if m in (bool, int, float, str)]
    return plain[0] if len(plain) == 1 else None


def option_fields(cls: type, names: Iterable[str] | None = None) -> list[Option]:
    """The declared options of dataclass ``cls`` in declaration order (only ``names``, in
    their order, when given; an undeclared name raises ``KeyError``)."""
    hints = typing.get_type_hints(cls)
    found = {}
    for field in dataclasses.fields(cls):
        option = field.metadata.get(METADATA_KEY)
        if option is None:
            continue
        default = None if field.default is dataclasses.MISSING else field.default
        found[field.name] = dataclasses.replace(
            option, name=field.name, kind=option.kind or _kind(field, hints),
            nullable=default is None, default=default)
    if names is None:
        return list(found.values())
    return [found[name] for name in names]


def undeclared_fields(cls: type) -> list[str]:
    """The fields of ``cls`` without an :class:`Option` (internal or set otherwise)."""
    return [f.name for f in dataclasses.fields(cls) if METADATA_KEY not in f.metadata]


# -- argparse ------------------------------------------------------------------------------
class _Parser:
    """An argparse ``type``: text → the shown value → the stored value (named like the
    kind, so that argparse says "invalid int value")."""

    def __init__(self, option: Option):
        self.option = option
        self.__name__ = getattr(option.kind, "__name__", "value") if option.parse is None \
            else option.name

    def __call__(self, text: str) -> Any:
        option = self.option
        if option.parse is not None:
            try:
                return option.parse(text)
            except ValueError as exc:  # OptionError included: a usage error, exit code 2
                raise argparse.ArgumentTypeError(str(exc)) from None
        return option.stored((option.kind or str)(text))


def add_arguments(parser: argparse.ArgumentParser, cls: type,
                  names: Sequence[str] | None = None) -> list[argparse.Action]:
    """Add a flag for every declared option of ``cls`` that has one (``names``: only
    those). Every flag defaults to ``None`` (not given: :func:`values_from_args` leaves
    it out, so the dataclass's or the profile's default applies); a boolean is a
    ``store_true`` flag, or ``--flag/--no-flag`` when it defaults to true."""
    actions = []
    for option in option_fields(cls, names):
        if not option.cli:
            continue
        kwargs: dict[str, Any] = {"dest": option.name, "default": None, "help": option.help}
        if option.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if option.default is True \
                else "store_true"
        else:
            kwargs["type"] = _Parser(option)
            if option.choices is not None:
                kwargs["choices"] = option.choices
            if option.nargs is not None:
                kwargs["nargs"] = option.nargs
            kwargs["metavar"] = option.metavar or (
                None if option.choices else option.cli_flag.lstrip("-").replace("-", "_")
                .upper())
        actions.append(parser.add_argument(option.cli_flag, **kwargs))
    return actions


def values_from_args(args: argparse.Namespace, cls: type,
                     names: Sequence[str] | None = None) -> dict[str, Any]:
    """The stored values of the declared flags the user gave (``nargs`` values as lists)."""
    values = {}
    for option in option_fields(cls, names):
        value = getattr(args, option.name, None) if option.cli else None
        if value is not None:
            values[option.name] = list(value) if option.nargs is not None else value
    return values


def given_flags(args: argparse.Namespace, cls: type) -> list[tuple[str, Any]]:
    """``(flag, value)`` of every declared flag, given or not (``None``)."""
    return [(option.cli_flag, getattr(args, option.name, None))
            for option in option_fields(cls) if option.cli]


# -- checks --------------------------------------------------------------------------------
def check_value(option: Option, value: Any, title: str | None = None) -> None:
    """Refuse a value of the wrong type, below the declared minimum or not among the
    choices (:class:`~napari_weakseg.errors.OptionError` naming ``title``)."""
    title = title or option.title
    if value is None:
        if option.nullable:
            return
        if option.choices is None:
            raise OptionError(f"{title}: a value is required")
    if option.nargs is not None:
        if not isinstance(value, (list, tuple)) or len(value) != option.nargs:
            raise OptionError(f"{title}: expected {option.nargs} values, got {value!r}")
        single = dataclasses.replace(option, nargs=None, nullable=False)
        for item in value:
            check_value(single, item, title)
        return
    kind = option.kind
    if option.choices is not None:
        if value not in option.choices:
            raise OptionError(f"{title}: {value!r} is not one of {', '.join(option.choices)}")
        return
    if kind is bool:
        if not isinstance(value, bool):
            raise OptionError(f"{title}: expected true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"{title}: expected a whole number, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise OptionError(f"{title}: expected a finite number, got {value!r}")
    elif kind is str and not isinstance(value, str):
        raise OptionError(f"{title}: expected a name, got {value!r}")
    if option.minimum is None or kind not in (int, float):
        return
    bound = option.stored(option.minimum)
    if option.above_minimum and value <= bound:
        raise OptionError(f"{title}: {value} must be greater than {bound:g}")
    if value < bound:
        raise OptionError(f"{title}: {value} is too small (at least {bound:g})")


def check_values(instance: Any, names: Sequence[str] | None = None,
                 by_flag: bool = False) -> None:
    """:func:`check_value` on every declared option of a dataclass instance (``by_flag``:
    name them by their flags, as the CLI's errors do)."""
    for option in option_fields(type(instance), names):
        check_value(option, getattr(instance, option.name),
                    option.cli_flag if by_flag else None)


__all__ = ["METADATA_KEY", "Option", "add_arguments", "check_value", "check_values",
           "given_flags", "option_field", "option_fields", "undeclared_fields",
           "values_from_args"]
