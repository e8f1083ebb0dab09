"""A build's loss recipe (:class:`LossWeights`, read from ``--loss``) and :class:`DistillationLoss`,
which composes the registered terms it names.

The terms themselves are registered classes (:mod:`edgedistill.distill.loss_registry`, built-ins in
:mod:`edgedistill.distill.loss_terms`, the arithmetic in :mod:`edgedistill.distill.loss_functions`);
nothing here knows any loss by name, so a new loss is one registered class in one file. Import
``LossTerm``, ``LossOption``, ``LossBatch`` and ``register_loss`` from here to write one: this
module registers the built-ins first, so the new term is summed after them.

``DistillationLoss`` decides once, from the two models and a sample batch, which layers to pair
and which adapters to train, then sums the weighted terms from logits and tapped features. The
teacher side (logits and features) is an input, so a trainer can compute it once and cache it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from edgedistill.distill import loss_terms  # noqa: F401  (registers the built-in terms, in summing order)
from edgedistill.distill.loss_registry import (  # noqa: F401  (LossOption, register_loss: for new terms)
    LossBatch,
    LossOption,
    LossSetup,
    LossTerm,
    register_loss,
    registered_losses,
    registered_options,
)
from edgedistill.errors import InputError

# ---------------------------------------------------------------------------------------------
# Weights, parsed from the command line


class LossWeightsError(InputError, ValueError):
    """A malformed ``--loss`` string; a ValueError to callers, an input error to the CLI."""


@dataclass(init=False, eq=False, repr=False)
class LossWeights:
    """A weight per registered loss and the options of each, e.g. ``LossWeights(ce=0.5, kd=0.5,
    temperature=4.0)``; ``w.kd`` and ``w.temperature`` read them.

    Unnamed losses keep their default weight (ce 1, the others 0) and options their defaults. Two
    recipes are equal when they train the same loss: options of losses not in use don't count.
    ``dataclasses.replace(w, hint=1.0)`` gives a changed copy.
    """

    weights: dict[str, float]
    options: dict[str, float]

    def __init__(
        self, weights: Mapping[str, float] | None = None, options: Mapping[str, float] | None = None, **values: float
    ) -> None:
        losses, opts = registered_losses(), registered_options()
        w = {name: float(cls.default_weight) for name, cls in losses.items()}
        o = {name: float(opt.default) for name, (_, opt) in opts.items()}
        w.update({k: float(v) for k, v in (weights or {}).items()})
        o.update({k: float(v) for k, v in (options or {}).items()})
        for key, value in values.items():
            if key in losses:
                w[key] = float(value)
            elif key in opts:
                o[key] = float(value)
            else:
                raise TypeError(
                    f"LossWeights has no loss or option {key!r}; registered losses: {', '.join(losses)}; "
                    f"options: {', '.join(opts) or 'none'}"
                )
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "options", o)

    def __getattr__(self, name: str) -> float:
        if name.startswith("_") or name in ("weights", "options"):
            raise AttributeError(name)  # not set yet (copy, unpickling): no lookup through the maps
        if name in registered_losses():
            return self.weight(name)
        if name in registered_options():
            return self.option(name)
        raise AttributeError(f"LossWeights has no loss or option {name!r}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"LossWeights is read-only; use dataclasses.replace(w, {name}=...)")

    def weight(self, name: str) -> float:
        if name in self.weights:
            return self.weights[name]
        return float(registered_losses()[name].default_weight)  # registered after this was made

    def option(self, name: str) -> float:
        if name in self.options:
            return self.options[name]
        return float(registered_options()[name][1].default)

    def in_use(self) -> list[str]:
        """Names of the losses with weight > 0, in summing order."""
        return [name for name in registered_losses() if self.weight(name) > 0]

    def without(self, names: list[str] | set[str]) -> "LossWeights":
        """A copy with the weights of ``names`` set to 0."""
        return LossWeights(self.weights, self.options, **{name: 0.0 for name in names})

    def to_str(self) -> str:
        """The losses in use with their options (``T`` for temperature) and any weight moved off its
        default (``ce=0.0``), e.g. ``ce=0.5,kd=0.5,T=4.0``. Options are written even at their
        defaults, so the string means the same run if defaults change; a newly registered loss
        changes no existing string. ``parse_loss_weights(w.to_str()) == w``."""
        parts = []
        for name, cls in registered_losses().items():
            weight = self.weight(name)
            if weight > 0 or weight != cls.default_weight:
                parts.append(f"{name}={weight!r}")
            if weight > 0:
                parts += [f"{opt.short}={self.option(opt.name)!r}" for opt in cls.options]
        return ",".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LossWeights):
            return NotImplemented
        return self.to_str() == other.to_str()

    def __hash__(self) -> int:
        return hash(self.to_str())

    def __repr__(self) -> str:
        return f"LossWeights({self.to_str()})"


def _keys() -> tuple[dict[str, tuple[str, str]], str]:
    """Every key a ``--loss`` string may use -> (kind, canonical name); and their list for help."""
    keys: dict[str, tuple[str, str]] = {name: ("loss", name) for name in registered_losses()}
    opts = registered_options()
    for name, (_, opt) in opts.items():
        keys[name] = keys[opt.short] = ("option", name)
    shorts = [opt.short for _, opt in opts.values() if opt.short != opt.name]
    return keys, ", ".join([*shorts, *registered_losses(), *opts])


def parse_loss_weights(text: str) -> LossWeights:
    """Parse ``"kd=1.0,hint=0.5,T=4"``: unnamed components keep their defaults (ce=1, others 0)."""
    keys, keys_help = _keys()
    opts = registered_options()
    values: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep:
            raise LossWeightsError(f"loss weight {item!r} has no '='", hint=f"write KEY=NUMBER with KEY in {keys_help}")
        if key not in keys:
            raise LossWeightsError(f"unknown loss weight {key!r} in {text!r}", hint=f"valid keys: {keys_help}")
        kind, name = keys[key]
        if name in values:
            raise LossWeightsError(f"loss weight {key!r} given twice in {text!r}")
        try:
            value = float(raw)
        except ValueError:
            raise LossWeightsError(f"loss weight {key}={raw!r} is not a number", hint="e.g. kd=1.0,T=4") from None
        if not math.isfinite(value) or value < 0:
            raise LossWeightsError(f"loss weight {key}={raw} must be a finite number >= 0")
        if kind == "option" and opts[name][1].positive and value == 0:
            opt = opts[name][1]
            label = name if opt.short == name else f"{name} {opt.short}"
            raise LossWeightsError(f"{label} must be > 0", hint=opt.hint or None)
        values[name] = value
    return LossWeights(**values)


# ---------------------------------------------------------------------------------------------
# Composition


class DistillationLoss(nn.Module):
    """The weighted sum of the registered terms ``weights`` puts above 0, for one teacher/student.

    Built once from both models and a sample batch, which only serves to pair layers and size the
    hint adapters; the models themselves are not kept. ``paths_teacher`` / ``paths_student`` are
    the module paths to capture with :class:`~edgedistill.models.taps.FeatureTaps`.
    ``parameters()`` are the terms' own (hint adapters): optimise them with the student.

    ``features`` / ``teacher_logits``: whether the caller can feed tapped features and teacher
    logits. Terms that need what it cannot feed are left out and listed in ``dropped`` (name ->
    why); ``used`` is the recipe that remains. ``no_features_because`` explains the first.
    """

    def __init__(
        self,
        teacher: nn.Module | None,
        student: nn.Module,
        weights: LossWeights,
        sample: torch.Tensor | None,
        *,
        features: bool = True,
        teacher_logits: bool = True,
        no_features_because: str = "this caller cannot tap them",
    ) -> None:
        super().__init__()
        self.weights = weights
        ctx = LossSetup(teacher, student, sample, features=features, teacher_logits=teacher_logits,
                        no_features_because=no_features_because)
        self.terms = nn.ModuleDict()
        self.dropped: dict[str, str] = {}
        for name, cls in registered_losses().items():
            weight = weights.weight(name)
            if weight <= 0:
                continue
            term: LossTerm = cls(weight, weights.options)
            term.configure(ctx)
            why = term.missing(ctx)
            if why is not None:
                self.dropped[name] = why
                continue
            term.setup(ctx)
            self.terms[name] = term
        self.used = weights.without(set(self.dropped))
        self.paths_teacher: list[str] = list(dict.fromkeys(p for t in self.terms.values() for p in t.paths_teacher))
        self.paths_student: list[str] = list(dict.fromkeys(p for t in self.terms.values() for p in t.paths_student))

    def forward(
        self,
        student_logits: torch.Tensor,
        labels: torch.Tensor | None,
        teacher_logits: torch.Tensor | None,
        s_feats: Mapping[str, torch.Tensor],
        t_feats: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, float]]:
        for name, term in self.terms.items():
            if term.needs_labels and labels is None:
                raise ValueError(f"{name} weight > 0 needs labels; set {name}=0 to distil from the teacher alone")
        wanting = [term.form or name for name, term in self.terms.items() if term.needs_teacher_logits]
        if wanting and teacher_logits is None:
            raise ValueError(f"{', '.join(wanting)} need teacher_logits")
        batch = LossBatch(student_logits, labels, teacher_logits, s_feats, t_feats)
        terms: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            value = term(batch)
            if value is not None:
                terms[name] = term.weight * value
        if not terms:
            raise ValueError(f"no loss component has weight > 0 in {self.weights.to_str()}")
        total = torch.stack(list(terms.values())).sum()
        return total, {name: float(value.detach()) for name, value in terms.items()}
