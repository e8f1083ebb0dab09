"""Predict a student's latency on a target's runtime from its cost features, and find the model.

Latency is linear in a few features of the model's fused kernels (:mod:`edgedistill.hardware.cost`),
one coefficient set per precision:

    ms = fixed + per_kernel * kernels + per_conv_mac * conv_MACs + per_dw_mac * depthwise_MACs
         + per_fc_mac * fc_MACs
         + per_matmul_mac * attention_matmul_MACs + per_byte * bytes_moved
         + per_elem * elements of non-MAC kernels + per_attn_elem * attention-score elements

Coefficients are fitted by non-negative least squares on relative error (each measurement's row is
divided by its latency, so a 50 us model counts as much as a 5 ms one). Threads other than the
fitted count scale the compute terms by an Amdahl factor with a stated parallel efficiency;
measuring at the target's own thread count avoids relying on it.

A target's model is read from its calibration file (the user's own before the shipped one); a
target without one borrows the nearest shipped target's (:func:`latency_model_for`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.hardware.cost import FEATURE_UNITS, FEATURES, model_cost
from edgedistill.hardware.targets import available_targets, load_target

_COMPUTE = ("conv_macs", "dw_macs", "fc_macs", "matmul_macs", "elems", "attn_elems")  # terms threads divide
DEFAULT_PARALLEL_EFFICIENCY = 0.6  # assumed share of ideal speed-up per extra thread (compute terms only)


@dataclass
class LatencyRecord:
    """One measured latency with the features of the model that was measured."""

    features: dict[str, float]
    precision: str
    threads: int
    measured_ms: float
    name: str = ""
    source: str = ""
    input_shape: list = field(default_factory=list)  # (C, H, W) of what was measured, when known

    @classmethod
    def from_model(cls, spec_or_model: Any, input_shape: tuple[int, ...], precision: str, threads: int,
                   measured_ms: float, name: str = "", source: str = "") -> "LatencyRecord":
        feats = model_cost(spec_or_model, input_shape).features(precision)
        return cls(feats, precision, threads, float(measured_ms), name, source, list(input_shape))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyRecord":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def nnls(a: np.ndarray, b: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Non-negative least squares (scipy's Lawson-Hanson), optionally with a small ridge term."""
    from scipy.optimize import nnls as _nnls

    if ridge > 0:
        a = np.vstack([a, math.sqrt(ridge) * np.eye(a.shape[1])])
        b = np.concatenate([b, np.zeros(a.shape[1])])
    return _nnls(a, b, maxiter=50 * a.shape[1])[0]


@dataclass
class LatencyModel:
    """Per-precision coefficients (ms per feature unit) for one target's runtime.

    ``coefficients[precision][feature]``; ``threads`` the thread count they were fitted or derived
    at; ``scale`` multiplies every prediction (the cheap refit when only a few measurements exist);
    ``sources`` says where each figure came from (measurements with their command, or citations).
    """

    target: str
    runtime: str
    threads: int
    coefficients: dict[str, dict[str, float]] = field(default_factory=dict)
    scale: float = 1.0
    parallel_efficiency: float = DEFAULT_PARALLEL_EFFICIENCY
    sources: list[dict] = field(default_factory=list)
    fit_summary: dict = field(default_factory=dict)
    # Set when the target has no calibration of its own: the shipped target whose coefficients
    # these are (see :func:`latency_model_for`).
    derived_from: str = ""
    # The file it was read from when that is not a shipped calibration (a user's own, or the
    # cache's from `edgedistill calibrate`), so that the description says which one was used.
    origin: str = ""

    def describe(self, target_name: str | None = None) -> str:
        """One line for the build's output, the selection table and the manifest."""
        name = target_name or self.target
        if self.derived_from:
            how = next((s.get("what", "") for s in self.sources if s.get("kind") == NEAREST_KIND), "")
            return (f"{name} latency model derived from {self.derived_from}'s calibration "
                    f"(no calibration/{name}.json{'; ' + how if how else ''})")
        kinds = ", ".join(s.get("kind", "?") for s in self.sources) or "no sources"
        return f"{name} latency model ({kinds}{'; from ' + self.origin if self.origin else ''})"

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, records: list[LatencyRecord], ridge: float = 1e-3) -> "LatencyModel":
        """Refit the coefficients of every precision that has at least one record.

        Rows are features divided by feature scale and by the measured latency (relative error);
        with fewer records than features the tiny ridge keeps the solution unique.
        """
        for precision in sorted({r.precision for r in records}):
            rows = [r for r in records if r.precision == precision]
            x = np.array([[self._thread_adjusted(r.features, r.threads)[f] for f in FEATURES] for r in rows])
            y = np.array([r.measured_ms for r in rows])
            colscale = np.maximum(np.abs(x).max(axis=0), 1e-12)
            a = (x / colscale) / y[:, None]
            coef = nnls(a, np.ones(len(rows)), ridge) / colscale
            self.coefficients[precision] = {f: float(c) for f, c in zip(FEATURES, coef)}
            pred = x @ coef
            err = np.abs(pred / y - 1.0) * 100
            self.fit_summary[precision] = {
                "n": len(rows), "median_abs_pct_err": float(np.median(err)), "max_abs_pct_err": float(err.max()),
            }
        self.scale = 1.0
        return self

    def _thread_adjusted(self, feats: dict[str, float], threads: int) -> dict[str, float]:
        """Features of a run at ``threads`` expressed as if run at ``self.threads`` (compute terms)."""
        if threads == self.threads:
            return feats
        factor = self._speedup(self.threads) / self._speedup(threads)
        return {f: (v * factor if f in _COMPUTE else v) for f, v in feats.items()}

    def _speedup(self, threads: int) -> float:
        return 1.0 + self.parallel_efficiency * (max(1, threads) - 1)

    # --- prediction ---------------------------------------------------------------------------
    def predict_features(self, feats: dict[str, float], precision: str, threads: int | None = None) -> float:
        if precision not in self.coefficients:
            known = ", ".join(sorted(self.coefficients)) or "none"
            raise KeyError(f"latency model for {self.target} has no {precision} coefficients (has: {known})")
        coef = self.coefficients[precision]
        f = feats
        if threads and threads != self.threads:
            # compute terms shrink with threads; fixed and per-kernel overheads do not
            factor = self._speedup(self.threads) / self._speedup(threads)
            f = {k: (v * factor if k in _COMPUTE else v) for k, v in feats.items()}
        return self.scale * sum(coef.get(k, 0.0) * f.get(k, 0.0) for k in FEATURES)

    def predict(self, spec: Any, input_shape: tuple[int, ...], precision: str | None = None,
                threads: int | None = None) -> float:
        """Predicted median latency in ms of ``spec`` (a zoo spec or an nn.Module) at batch 1."""
        precision = precision or next(iter(self.coefficients))
        return self.predict_features(model_cost(spec, input_shape).features(precision), precision, threads)

    def with_scale(self, scale: float) -> "LatencyModel":
        return dataclasses.replace(self, scale=float(scale), coefficients={k: dict(v) for k, v in self.coefficients.items()})

    # --- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "target": self.target, "runtime": self.runtime, "threads": self.threads,
            "features": dict(FEATURE_UNITS), "coefficients": self.coefficients, "scale": self.scale,
            "parallel_efficiency": self.parallel_efficiency, "sources": self.sources, "fit_summary": self.fit_summary,
            **({"derived_from": self.derived_from} if self.derived_from else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyModel":
        return cls(
            target=str(d["target"]), runtime=str(d.get("runtime", "litert")), threads=int(d.get("threads", 1)),
            coefficients={p: {f: float(v) for f, v in c.items()} for p, c in d.get("coefficients", {}).items()},
            scale=float(d.get("scale", 1.0)),
            parallel_efficiency=float(d.get("parallel_efficiency", DEFAULT_PARALLEL_EFFICIENCY)),
            sources=list(d.get("sources", [])), fit_summary=dict(d.get("fit_summary", {})),
            derived_from=str(d.get("derived_from", "")),
        )

    def save(self, path: Path) -> Path:
        from edgedistill.fsutil import write_json_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_dict())
        return path


NEAREST_KIND = "nearest-target"  # the source kind of a model borrowed from another target


def calibration_path(target_name: str) -> Path:
    """The shipped calibration file of a target: in a checkout the repository's
    ``calibration/<target>.json`` (what ``calibrate --write-repo`` and
    ``scripts/derive_calibration.py`` write); in a wheel install its package data (read-only)."""
    from edgedistill.paths import calibration_dir

    return calibration_dir() / f"{target_name}.json"


def user_calibration_path(target_name: str) -> Path:
    """``<cache>/calibration/<target>.json``: what ``edgedistill calibrate`` writes by default."""
    from edgedistill.paths import user_calibration_dir

    return user_calibration_dir() / f"{target_name}.json"


def find_calibration(target_name: str) -> Path | None:
    """The calibration file a target's latency model is read from, or None when it has none.

    The user's own (``<cache>/calibration/<target>.json``, which ``edgedistill calibrate`` writes
    unless told ``--write-repo``/``--out``) comes first, then the shipped one
    (:func:`calibration_path`); so a calibration measured on this machine is used without
    touching the checkout or the installed package.
    """
    for path in (user_calibration_path(target_name), calibration_path(target_name)):
        if path.is_file():
            return path
    return None


def load_latency_model(target_name: str, path: Path | None = None) -> LatencyModel:
    """The target's latency model from ``path``, else from :func:`find_calibration`'s file."""
    from edgedistill.errors import InputError

    path = Path(path) if path is not None else find_calibration(target_name)
    if path is None or not path.is_file():
        missing = (f"{path} does not exist" if path is not None else
                   f"neither {user_calibration_path(target_name)} nor {calibration_path(target_name)} exists")
        raise InputError(
            f"no latency calibration for target {target_name!r}: {missing}",
            hint=f"run `edgedistill calibrate --target {target_name}` on a device of that kind, or copy "
                 "calibration/host.json and edit its sources",
        )
    try:
        data = json.loads(path.read_text())
        model = LatencyModel.from_dict(data["latency_model"] if "latency_model" in data else data)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"latency calibration {path} is malformed: {exc}") from exc
    if path.resolve() != calibration_path(target_name).resolve():
        model.origin = str(path)
    return model


def nearest_calibrated_target(target) -> tuple[Any, Path] | None:
    """The shipped target whose calibration stands in for ``target``'s missing one, with its file.

    Candidates are the targets of :func:`~edgedistill.paths.targets_dir` (the shipped ones) other
    than ``target`` that run the same runtime and have a calibration (:func:`find_calibration`)
    with coefficients for ``target``'s precision. "Nearest" is the first in this order: the same
    delegate, then the same precision, then the same ABI (the same instruction set says more
    about per-MAC cost than the thread count, which the model scales), then the smallest
    difference in threads, then the name (alphabetical, so the choice is stable). None when there
    is no candidate.
    """
    ranked = []
    for name in available_targets():
        other = load_target(name)
        if other.name == target.name or other.runtime != target.runtime:
            continue
        path = find_calibration(other.name)
        if path is None:
            continue
        if target.precision not in load_latency_model(other.name, path).coefficients:
            continue
        key = (other.delegate != target.delegate, other.precision != target.precision,
               other.abi != target.abi, abs(other.threads - target.threads), other.name)
        ranked.append((key, other, path))
    if not ranked:
        return None
    _, other, path = min(ranked, key=lambda r: r[0])
    return other, path


def latency_model_for(target) -> LatencyModel:
    """The latency model the build and ``select`` use for ``target`` (a :class:`Target`).

    Its own calibration (:func:`find_calibration`) when it has one. Otherwise, for a user's own
    target, the calibration of the nearest shipped target of the same runtime
    (:func:`nearest_calibrated_target`), used as it is: its coefficients keep their thread count
    and predictions at the target's threads scale the compute terms by the model's parallel
    efficiency, as for any other thread count. The model says so (:meth:`LatencyModel.describe`:
    "derived from rpi4's calibration (no calibration/<name>.json; ...)"). With no such target,
    an :class:`~edgedistill.errors.InputError` says what to run or write.
    """
    from edgedistill.errors import InputError

    path = find_calibration(target.name)
    if path is not None:
        return load_latency_model(target.name, path)
    nearest = nearest_calibrated_target(target)
    if nearest is None:
        how = (f"run `edgedistill calibrate --target {target.path}` here (it writes "
               f"{user_calibration_path(target.name)})" if target.device_kind == "local" else
               f"measure on a {target.name} device and write {user_calibration_path(target.name)}")
        raise InputError(
            f"no latency calibration for target {target.name!r} ({target.path}): no "
            f"{user_calibration_path(target.name)} or {calibration_path(target.name)}, and no shipped "
            f"{target.runtime} target to derive one from",
            hint=f"{how}, or write calibration/{target.name}.json (see calibration/README.md)",
        )
    other, base_path = nearest
    base = load_latency_model(other.name, base_path)
    same = [f"{k} {getattr(target, k)}" for k in ("delegate", "precision", "abi")
            if getattr(other, k) == getattr(target, k) and getattr(target, k)]
    threads = (f"{base.threads} threads" if base.threads == target.threads else
               f"{base.threads} threads, scaled to {target.threads} with parallel efficiency "
               f"{base.parallel_efficiency:g}")
    what = (f"nearest shipped {target.runtime} target: {', '.join(same + [threads])}; "
            f"an estimate until {target.name} is measured")
    return dataclasses.replace(
        base, target=target.name, derived_from=other.name, origin=str(base_path),
        coefficients={p: dict(c) for p, c in base.coefficients.items()},
        sources=[{"kind": NEAREST_KIND, "base": other.name, "file": str(base_path), "what": what}] + list(base.sources),
    )
