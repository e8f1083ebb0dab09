"""Is a model learning anything? Chance-level and collapse checks shared by the build and verify.

A randomly initialised teacher scores about 1/K on K balanced classes, and a student distilled from
it predicts one class: every later stage then "passes" (top-1 agreement of a constant model with
itself is 100%). These checks say so before such a model ships.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChanceCheck:
    """An accuracy measured on ``n`` labelled images against what guessing would score."""

    accuracy: float
    chance: float  # the accuracy of always answering the most frequent class
    threshold: float  # at or below this the accuracy is indistinguishable from chance
    n: int

    @property
    def near_chance(self) -> bool:
        return self.accuracy <= self.threshold

    @property
    def weak(self) -> bool:
        """Less than halfway from chance to perfect: small logit margins, fragile under int8."""
        return self.accuracy < self.chance + 0.5 * (1.0 - self.chance)


def chance_check(accuracy: float, labels: np.ndarray) -> ChanceCheck:
    """Compare ``accuracy`` on ``labels`` with the majority-class rate. The threshold is three
    binomial standard errors above it (at least 2 points): a model that is no better than that on
    this many images has not been shown to learn the task."""
    labels = np.asarray(labels)
    n = max(len(labels), 1)
    chance = float(np.bincount(labels).max() / n) if len(labels) else 0.0
    margin = max(0.02, 3.0 * math.sqrt(max(chance * (1.0 - chance), 1e-12) / n))
    return ChanceCheck(accuracy=float(accuracy), chance=chance, threshold=min(1.0, chance + margin), n=len(labels))


@dataclass(frozen=True)
class CollapseCheck:
    """How many of the classes a model ever predicts on a split."""

    predicted_classes: int
    num_classes: int
    top_class_share: float  # fraction of predictions that go to the most predicted class

    @property
    def collapsed(self) -> bool:
        # Fewer than half the classes ever predicted, or most answers the same class.
        return self.predicted_classes < max(2, math.ceil(self.num_classes / 2)) or (
            self.num_classes > 2 and self.top_class_share > 0.5
        )

    def describe(self) -> str:
        return (f"predicts only {self.predicted_classes} of {self.num_classes} classes "
                f"({100 * self.top_class_share:.0f}% of answers are one class)")


def collapse_check(predictions: np.ndarray, num_classes: int) -> CollapseCheck:
    pred = np.asarray(predictions).astype(np.int64)
    counts = np.bincount(pred, minlength=num_classes) if len(pred) else np.zeros(num_classes, dtype=np.int64)
    share = float(counts.max() / len(pred)) if len(pred) else 0.0
    return CollapseCheck(int((counts > 0).sum()), num_classes, share)
