"""The loss registry: every part a build's loss can name, as a class registered under that name.

A new loss is one registered class in one file, and nothing else to edit::

    from edgedistill.distill.losses import LossBatch, LossOption, LossTerm, register_loss

    @register_loss
    class MarginTerm(LossTerm):
        name = "margin"                                      # the key in --loss strings
        options = (LossOption("margin_width", key="m", default=1.0),)
        needs_teacher_logits = True

        def forward(self, batch: LossBatch) -> torch.Tensor:
            return my_margin_loss(batch.student_logits, batch.teacher_logits, self.option("margin_width"))

Once its module is imported, ``parse_loss_weights("ce=1,margin=0.5,m=2")`` reads it,
``LossWeights.to_str()`` names it (only when its weight is above 0, so no existing stage key
changes), and :class:`~edgedistill.distill.losses.DistillationLoss` adds ``0.5 * value`` to the
total. The built-in terms are in :mod:`edgedistill.distill.loss_terms`.

Terms are summed in registration order. That order is part of a recipe's numbers (float addition
is not associative), so a new term is appended, never inserted before the built-ins: import the
names from :mod:`edgedistill.distill.losses`, as above, which registers the built-ins first.

A term says what it needs (labels, teacher logits, tapped features) so that a caller who cannot
provide something, such as QAT on an exported graph with no module paths to tap, can leave it out
and say why instead of failing. :meth:`LossTerm.configure` may refine those needs from the models
(RKD taps embeddings only when both models name an embedding module); :meth:`LossTerm.setup`
then pairs layers and builds any trainable parameters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Mapping

import torch
from torch import nn

from edgedistill.models.taps import stage_pairs

_RESERVED = frozenset({"weights", "options"})  # the fields of LossWeights


@dataclass(frozen=True)
class LossOption:
    """A number a term reads besides its weight, e.g. KD's temperature.

    ``name`` is the attribute on ``LossWeights`` and the keyword of its constructor; ``key`` the
    short form written in ``--loss`` strings (both are accepted there). ``positive``: 0 is not
    allowed; ``hint`` is what the error suggests instead.
    """

    name: str
    default: float
    key: str = ""
    positive: bool = False
    hint: str = ""

    @property
    def short(self) -> str:
        return self.key or self.name


@dataclass
class LossBatch:
    """What one training step hands every term: logits, labels, and the tapped features by path."""

    student_logits: torch.Tensor
    labels: torch.Tensor | None
    teacher_logits: torch.Tensor | None
    s_feats: Mapping[str, torch.Tensor]
    t_feats: Mapping[str, torch.Tensor]

    def student_feature(self, path: str) -> torch.Tensor:
        return _take(self.s_feats, path, "student")

    def teacher_feature(self, path: str) -> torch.Tensor:
        return _take(self.t_feats, path, "teacher")


def _take(feats: Mapping[str, torch.Tensor], path: str, side: str) -> torch.Tensor:
    if path not in feats:
        raise KeyError(f"{side} features lack {path!r} (have {sorted(feats)}); tap paths_{side} with FeatureTaps")
    return feats[path]


@dataclass
class LossSetup:
    """What a term may look at while it sets itself up, and what the caller can feed it later.

    ``features``: intermediate features can be tapped by module path (False on an exported graph,
    ``no_features_because`` says why); ``teacher_logits`` / ``labels``: they will be passed to
    every step.
    """

    teacher: nn.Module | None
    student: nn.Module
    sample: torch.Tensor | None
    features: bool = True
    teacher_logits: bool = True
    labels: bool = True
    no_features_because: str = "this caller cannot tap them"

    @functools.cached_property
    def stages(self) -> list[tuple[str, str]]:
        """(teacher path, student path) per student stage, shared by the terms that pair stages."""
        return stage_pairs(self.teacher, self.student, self.sample)


class LossTerm(nn.Module):
    """One named, weighted part of a distillation loss. Subclass, set the class attributes,
    implement :meth:`forward` (the unweighted value), and decorate with :func:`register_loss`.

    An ``nn.Module``, so parameters a term builds in :meth:`setup` (hint adapters) are trained
    with the student and saved with the loss.
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[LossOption, ...]] = ()
    default_weight: ClassVar[float] = 0.0  # the weight when a --loss string does not name it
    # What forward() reads; class defaults that configure() may change per instance.
    needs_labels: bool = False
    needs_teacher_logits: bool = False
    needs_features: bool = False
    form: str = ""  # which variant configure() chose, when a term has several (for reports)

    def __init__(self, weight: float, options: Mapping[str, float]) -> None:
        super().__init__()
        self.weight = float(weight)
        self.config = {opt.name: float(options.get(opt.name, opt.default)) for opt in self.options}
        self.paths_teacher: list[str] = []
        self.paths_student: list[str] = []

    def option(self, name: str) -> float:
        return self.config[name]

    def configure(self, ctx: LossSetup) -> None:
        """Decide which variant runs for these models and set ``needs_*`` to match. Only reads
        attributes of the models; runs nothing."""

    def setup(self, ctx: LossSetup) -> None:
        """Pair layers (fill ``paths_teacher`` / ``paths_student``) and build any parameters.
        Called only when every need is met."""

    def missing(self, ctx: LossSetup) -> str | None:
        """Why ``ctx`` cannot feed this term, or None when it can."""
        what = self.form or self.name
        if self.needs_features and not ctx.features:
            return f"{what} needs intermediate features tapped by module path, and {ctx.no_features_because}"
        if self.needs_teacher_logits and not ctx.teacher_logits:
            return f"{what} needs the teacher's logits, and none are given"
        if self.needs_labels and not ctx.labels:
            return f"{what} needs labels, and none are given"
        return None

    def forward(self, batch: LossBatch) -> torch.Tensor | None:  # None: nothing to compare
        raise NotImplementedError


_REGISTRY: dict[str, type[LossTerm]] = {}


def register_loss(cls: type[LossTerm]) -> type[LossTerm]:
    """Class decorator: make ``cls`` a loss that ``--loss`` strings may name."""
    if not (isinstance(cls, type) and issubclass(cls, LossTerm)):
        raise TypeError(f"register_loss takes a LossTerm subclass, got {cls!r}")
    name = cls.name
    if not name or not name.isidentifier() or name in _RESERVED:
        raise ValueError(f"{cls.__name__}.name must be an identifier other than {sorted(_RESERVED)}, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"a loss named {name!r} is registered already ({_REGISTRY[name].__name__})")
    taken = {n for n in _REGISTRY} | {k for c in _REGISTRY.values() for o in c.options for k in (o.name, o.short)}
    if name in taken:
        raise ValueError(f"loss name {name!r} is already an option of a registered loss")
    for opt in cls.options:
        clash = {opt.name, opt.short} & (taken | {name})
        if clash or not opt.name.isidentifier() or opt.name in _RESERVED:
            raise ValueError(f"option {opt.name!r} of loss {name!r} clashes with a registered name: {sorted(clash)}")
        taken |= {opt.name, opt.short}
    _REGISTRY[name] = cls
    return cls


def unregister_loss(name: str) -> None:
    """Remove a registered loss (for tests and plugins that register one for a while)."""
    _REGISTRY.pop(name, None)


def registered_losses() -> Mapping[str, type[LossTerm]]:
    """Name -> class, in registration order (the order terms are summed in)."""
    return MappingProxyType(_REGISTRY)


def registered_options() -> dict[str, tuple[str, LossOption]]:
    """Option name -> (the loss it belongs to, the option)."""
    return {opt.name: (cls.name, opt) for cls in _REGISTRY.values() for opt in cls.options}
