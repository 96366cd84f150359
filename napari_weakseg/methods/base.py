"""The method interface: one training objective per file, found by its ``id``.

A method computes its loss from tensors only; it never reads a project. The engine builds
batches with the keys below from the store's annotations (``napari_weakseg.weak.targets``);
a method uses the keys it needs and ignores the rest.

Batch keys (2D slices; B samples, C classes, H×W pixels; all on the training device):

``image``        (B, 1, H, W) float32, intensities normalised to [0, 1].
``labels``       (B, H, W) int64: the class of each pixel whose class is *known* (scribble
                 strokes, delineated pixels of dense/partial/sparse labels); −1 = unknown.
``annotated``    (B, C) bool: classes declared complete for the sample (partial/sparse:
                 the declared classes; dense: all; scribble: none). An unknown pixel of a
                 sample with annotated set Φ lies in {0} ∪ (classes ∉ Φ) — for Φ = ∅ that
                 is "anything", which is exactly a scribble's unlabelled pixel.
``valid``        (B, H, W) bool: pixels that carry supervision at all (a sparse volume's
                 undeclared slices are False).
``coarse_pos``   (B, P, H, W) int64: per positive coarse strategy, the coarse class of the
                 pixel or −1 (no positive coarse label there).
``coarse_neg``   (B, Q, C, H, W) bool: per negative coarse strategy, True where the pixel
                 is declared "not class c".
``kind``         (B, H, W) uint8, only for methods with ``kind_masks`` (``mixed``): which
                 annotation supervises the pixel, a bitmask of ``weak.targets.KIND_BITS``
                 (1 scribble stroke, 2 coarse mark, 4 incomplete partial/sparse slice,
                 8 complete slice: dense or every class declared); 0 = none.

``rng``          a ``numpy.random.Generator`` seeded from (seed, iteration, rank) for the
                 method's own random draws (e.g. FADC), so resumed runs repeat them; torch's
                 global RNG is re-seeded the same way before each iteration.

A method's network returns ``(logits, features)``: logits (B, C, H, W) and the last decoder
feature map (B, F, H, W).
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from ..errors import OptionError

ANNOTATION_KINDS = ("scribble", "coarse_pos", "coarse_neg", "partial", "sparse", "dense")


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimiser and schedule defaults (the paper's or the authors' code's)."""

    name: str = "sgd"  # "sgd" | "adamw"
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9


@dataclass
class LossOutput:
    """``total`` is the scalar to back-propagate; ``terms`` are detached scalars for logs —
    0-d tensors left on the device, so that a training step never waits for the GPU to
    read them; :meth:`scalar_terms` converts them (the trainer does so only when it sends
    a progress event)."""

    total: Any
    terms: dict[str, Any] = field(default_factory=dict)

    def scalar_terms(self) -> dict[str, float]:
        """``terms`` as Python floats (a device sync on a GPU)."""
        return {key: float(value) for key, value in self.terms.items()}


@dataclass(frozen=True)
class MethodOptions:
    """Base of a method's typed options (a frozen dataclass, the class attribute
    ``Method.Options``): one field per option, typed, with its default. A method's options
    are stored as a plain dict (``method_options`` in config.json / run.json);
    :meth:`from_dict` builds the dataclass from it and :meth:`to_dict` writes it back."""

    @classmethod
    def from_dict(cls, options: dict[str, Any], method_id: str = "") -> MethodOptions:
        """The options given in ``options`` over the defaults. Unknown names and values of
        the wrong type raise :class:`~napari_weakseg.errors.OptionError` (a ``ValueError``)
        naming the option; a whole number is accepted for a float option (stored as a
        float)."""
        known = sorted(f.name for f in fields(cls))
        unknown = set(options) - set(known)
        if unknown:
            raise OptionError(f"unknown options for {method_id!r}: {sorted(unknown)}; "
                              f"known: {known}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _checked(method_id, name, hints[name], value)
                      for name, value in options.items()})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option with its default, as a dict (the methods' ``DEFAULTS``)."""
        return asdict(cls())

    def to_dict(self) -> dict[str, Any]:
        """The options as the plain dict they are stored as (a copy)."""
        return asdict(self)


_EXPECTED = {bool: "true or false", int: "a whole number", float: "a number",
             str: "a string", dict: "a mapping", type(None): "null"}


def _checked(method_id: str, name: str, hint: Any, value: Any) -> Any:
    """``value`` if it has the type ``hint`` (bool, int, float, str, dict, or a union of
    them with None); an int for a float option becomes a float."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = [typing.get_origin(t) or t for t in (typing.get_args(hint) if union else (hint,))]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and is_number and isinstance(value, int):
            return value
        if kind is float and is_number:
            return float(value)
        if kind in (str, dict, type(None)) and isinstance(value, kind):
            return value
    expected = " or ".join(_EXPECTED.get(kind, getattr(kind, "__name__", str(kind)))
                           for kind in allowed)
    raise OptionError(f"option {name!r} of {method_id!r}: expected {expected}, "
                      f"got {value!r}")


def detach_terms(terms: dict[str, Any]) -> dict[str, Any]:
    """``terms`` with every tensor detached from the graph (floats pass through)."""
    return {key: value.detach() if hasattr(value, "detach") else value
            for key, value in terms.items()}


class Method:
    """Base class of every training objective.

    Subclasses set ``id``, ``description`` (one line, shown in the GUI), ``kinds`` (the
    annotation kinds it learns from) and ``optimizer``; they implement :meth:`loss` and may
    own extra modules (:meth:`extra_modules`, trained and checkpointed with the network) and
    per-step state (:meth:`after_step`, :meth:`state_dict`).
    """

    id: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kinds: ClassVar[frozenset[str]] = frozenset()
    optimizer: ClassVar[OptimizerSpec] = OptimizerSpec()
    #: How training draws samples by default (see ``training/data.py``).
    sampling: ClassVar[str] = "slices"
    #: Whether batches carry the per-pixel ``kind`` bitmask (volumes of several kinds).
    kind_masks: ClassVar[bool] = False
    #: The method's typed options (a :class:`MethodOptions` dataclass); ``None``: the
    #: subclass gets ``self.options`` as a dict (merged over ``DEFAULTS`` if it sets them).
    Options: ClassVar[type[MethodOptions] | None] = None
    #: Option names with their defaults, derived from :attr:`Options`.
    DEFAULTS: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "Options" in vars(cls) and cls.Options is not None:
            cls.DEFAULTS = cls.Options.defaults()

    def __init__(self, num_classes: int, feature_channels: int = 16, **options: Any):
        if self.Options is None and self.DEFAULTS is not None:  # a subclass without Options
            unknown = set(options) - set(self.DEFAULTS)
            if unknown:
                raise OptionError(f"unknown options for {self.id!r}: {sorted(unknown)}; "
                                  f"known: {sorted(self.DEFAULTS)}")
            options = {**self.DEFAULTS, **options}
        self.num_classes = num_classes
        self.feature_channels = feature_channels
        #: the options: an instance of :attr:`Options` (write it out with ``to_dict()``)
        self.options = (options if self.Options is None
                        else self.Options.from_dict(options, self.id))

    @classmethod
    def options_from_data(cls, targets: dict[str, Any]) -> dict[str, Any]:
        """Options implied by the training data (one volume's 3D targets), e.g. the number
        of coarse-annotation strategies; explicit options override them."""
        return {}

    def setup(self, net) -> None:
        """Called once with the segmentation network before training (build teachers…)."""

    def extra_modules(self) -> dict[str, Any]:
        """Trainable modules besides the network (``torch.nn.Module`` by name)."""
        return {}

    def loss(self, net, batch: dict[str, Any], step: int) -> LossOutput:
        raise NotImplementedError

    def after_step(self, net, step: int) -> None:
        """Called after each optimiser step (EMA updates…)."""

    def state_dict(self) -> dict[str, Any]:
        """Non-trainable state to checkpoint (e.g. a teacher's weights)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
