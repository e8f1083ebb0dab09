"""The charts of ``report.html``, each drawn to a base64 PNG that the page embeds.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state), so rendering a report never needs a screen and never disturbs a caller's matplotlib. Each
function takes plain values and returns ``str`` (base64 PNG) or ``None`` when there is nothing to
draw.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# One palette for the page and its charts.
INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
BLUE = "#2563eb"
GREEN = "#16a34a"
ORANGE = "#ea580c"
RED = "#dc2626"
PURPLE = "#7c3aed"
SERIES_COLORS = {"distill": BLUE, "scratch": ORANGE, "teacher": PURPLE}
DPI = 110


def _figure(width: float, height: float, **kw) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, **kw)
    FigureCanvasAgg(fig)
    return fig


def _style(ax) -> None:
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=8)
    ax.xaxis.label.set_color(INK)
    ax.yaxis.label.set_color(INK)
    ax.title.set_color(INK)


def to_base64_png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def candidates_chart(candidates: list[dict], chosen: str | None, budget_ms: float | None = None) -> str | None:
    """Accuracy against predicted latency of every candidate considered, as a base64 PNG (see
    :func:`candidates_figure`)."""
    fig = candidates_figure(candidates, chosen, budget_ms)
    return to_base64_png(fig) if fig is not None else None


# What a candidate's ``why_not`` (edgedistill.select.candidates._judge) says kept it out, by its words.
_WHY_NOT_KINDS = (("smaller than the teacher", "compression"), ("latency", "latency"), ("size", "size"),
                  ("memory", "memory"))
_KIND_WORDS = {"compression": "too little compression", "latency": "over the latency budget",
               "size": "over the size budget", "memory": "over the memory budget", "other": "other reasons"}


def why_not_kinds(why_not: str | None) -> list[str]:
    """The budgets a candidate misses (compression, latency, size, memory; "other" for a reason
    this version does not know), from its ``why_not``."""
    kinds = []
    for reason in filter(None, (r.strip() for r in (why_not or "").split(";"))):
        kind = next((k for words, k in _WHY_NOT_KINDS if words in reason), "other")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def candidates_legend(candidates: list[dict]) -> str:
    """The strip's key: what each marker means, the cross with the budgets that were actually
    missed (a cross is any candidate that does not fit, for whatever reason, not only latency)."""
    counts: dict[str, int] = {}
    for c in candidates:
        if not c.get("fits", True):
            for kind in why_not_kinds(c.get("why_not")) or ["other"]:
                counts[kind] = counts.get(kind, 0) + 1
    misses = ", ".join(f"{n} {_KIND_WORDS[kind]}" for kind, n in counts.items())
    cross = f"   \u00d7 does not fit ({misses})" if counts else ""
    return f"all {len(candidates)} candidates:  \u25cf fits{cross}   \u2605 chosen"


def latency_axis(xs: list[float], budget_ms: float | None) -> tuple[float, float, bool]:
    """(lower and upper x limit, whether the budget line is on the axis). The axis follows the
    candidates, not the budget: a 16 ms budget would squeeze candidates of 0.01-0.6 ms into its
    first pixels. Over a wide spread of latencies (above 10x) the axis is logarithmic, so the
    fastest candidates do not pile up at zero; the caller sets the scale when ``low > 0``."""
    positive = [x for x in xs if x > 0]
    if not positive:
        return 0.0, 1.0, budget_ms is not None and budget_ms <= 1.0
    top = max(positive) * 1.15
    low = min(positive) / 1.15 if max(positive) / min(positive) > 10 and len(positive) == len(xs) else 0.0
    return low, top, budget_ms is not None and low <= budget_ms <= top


def candidates_figure(candidates: list[dict], chosen: str | None, budget_ms: float | None = None) -> Figure | None:
    """Only trained candidates have an accuracy; the strip below the chart shows every candidate on
    the same x axis (filled: fits the budgets, cross: does not, the key says why), so none goes
    unseen. The latency axis spans the candidates; the latency budget is a line when it falls on
    it, else a note at the right edge says where it is. Without latency predictions the x axis is
    the parameter count."""
    if not candidates:
        return None
    use_latency = any(_num(c.get("predicted_latency_ms")) is not None for c in candidates)
    xkey = "predicted_latency_ms" if use_latency else "params"
    pts = [c for c in candidates if _num(c.get(xkey)) is not None]
    if not pts:
        return None
    trained = [c for c in pts if _num(c.get("accuracy")) is not None]
    # One trained point (the usual build: only the chosen student is trained) makes no curve; the
    # strip alone then shows every candidate, with the chosen one's accuracy written beside it.
    show_accuracy = len(trained) >= 2
    fig = _figure(7.4, 4.2 if show_accuracy else 1.9)
    if show_accuracy:
        gs = fig.add_gridspec(2, 1, height_ratios=(4, 1), hspace=0.08)
        ax, strip = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
        ax.sharex(strip)
    else:
        ax, strip = None, fig.add_subplot(1, 1, 1)
    budget_on_axis = False
    if use_latency:
        low, top, budget_on_axis = latency_axis([float(c[xkey]) for c in pts], budget_ms)
        if low > 0:
            _plain_log_axis(strip)
        strip.set_xlim(low, top)

    if ax is not None:
        _style(ax)
        for c in trained:
            is_chosen = c.get("name") == chosen
            fits = c.get("fits", True)
            ax.scatter(c[xkey], 100 * c["accuracy"], s=150 if is_chosen else 40,
                       marker="*" if is_chosen else ("o" if fits else "X"),
                       color=GREEN if is_chosen else (BLUE if fits else MUTED),
                       edgecolor=INK if is_chosen else "white", linewidth=0.8, zorder=3)
            ax.annotate(c.get("name", "?") + (" (chosen)" if is_chosen else ""), (c[xkey], 100 * c["accuracy"]),
                        textcoords="offset points", xytext=(6, 5), fontsize=7.5, color=INK)
        ax.set_ylabel("test accuracy (%)", fontsize=9)
        ax.margins(y=0.15)
        ax.tick_params(which="both", labelbottom=False)
        if budget_on_axis:
            ax.axvline(budget_ms, color=RED, linestyle="--", linewidth=1)
            ax.text(budget_ms, ax.get_ylim()[1], " latency budget", color=RED, fontsize=7.5, va="top")
    else:
        for c in trained:
            if c.get("name") == chosen:
                strip.annotate(f"{c.get('name')}: {100 * c['accuracy']:.2f}% (chosen)", (c[xkey], 0),
                               textcoords="offset points", xytext=(0, -16), ha="center", fontsize=7.5, color=INK)

    _style(strip)
    strip.grid(False, axis="y")
    strip.set_yticks([])
    strip.spines["left"].set_visible(False)
    for c in pts:
        is_chosen = c.get("name") == chosen
        fits = c.get("fits", True)
        strip.scatter(c[xkey], 0, s=160 if is_chosen else 34, marker="*" if is_chosen else ("o" if fits else "x"),
                      color=GREEN if is_chosen else (BLUE if fits else MUTED), zorder=4 if is_chosen else 3,
                      edgecolor=INK if is_chosen else None, linewidth=0.6 if is_chosen else 1.2)
    strip.set_ylim(-1.2 if ax is None else -1, 1)
    strip.text(0.0, 0.92, candidates_legend(pts), transform=strip.transAxes, fontsize=7.5, color=MUTED, va="top")
    if budget_on_axis:
        strip.axvline(budget_ms, color=RED, linestyle="--", linewidth=1)
    if not use_latency:
        strip.set_xscale("log")
    strip.set_xlabel(_x_label(use_latency, budget_ms, budget_on_axis), fontsize=9)
    return fig


def _x_label(use_latency: bool, budget_ms: float | None, budget_on_axis: bool) -> str:
    if not use_latency:
        return "parameters (no latency prediction for this target)"
    label = "predicted latency on the target (ms)"
    if budget_ms is not None and not budget_on_axis:  # say where it is, rather than stretch the axis to it
        label += f"; the latency budget, {budget_ms:g} ms, is off the axis"
    return label


def _plain_log_axis(ax) -> None:
    """A logarithmic x axis labelled 0.02, 0.05, 0.1, ... rather than in powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def training_chart(curves: dict[str, list[dict]]) -> str | None:
    """Training loss and validation accuracy per epoch of each trained model."""
    def plottable(recs: list[dict], key: str) -> bool:
        return any(_num(r.get(key)) is not None for r in recs)

    series = {k: v for k, v in (curves or {}).items() if v and (plottable(v, "loss") or plottable(v, "val_acc"))}
    if not series:
        return None
    fig = _figure(7.4, 2.9)
    loss_ax, acc_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    fig.subplots_adjust(wspace=0.28)
    for name, recs in series.items():
        color = SERIES_COLORS.get(name, MUTED)
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(recs)]
        losses = [_num(r.get("loss")) for r in recs]
        accs = [None if _num(r.get("val_acc")) is None else 100 * r["val_acc"] for r in recs]
        marker = "o" if len(recs) <= 12 else None
        if any(v is not None for v in losses):
            loss_ax.plot(epochs, [np.nan if v is None else v for v in losses], color=color, label=name,
                         marker=marker, markersize=3, linewidth=1.6)
        if any(v is not None for v in accs):
            acc_ax.plot(epochs, [np.nan if v is None else v for v in accs], color=color, label=name,
                        marker=marker, markersize=3, linewidth=1.6)
    for ax, title in ((loss_ax, "training loss"), (acc_ax, "validation accuracy (%)")):
        _style(ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (acc_ax, loss_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False, loc="lower right" if ax is acc_ax else "upper right")
            break
    return to_base64_png(fig)


def confusion_chart(matrix: list[list[int]], labels: list[str] | None = None) -> str | None:
    """Counts of (true row, predicted column); the colour is the share of the true class."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0 or m.shape[0] != m.shape[1]:
        return None
    n = m.shape[0]
    labels = list(labels) if labels and len(labels) == n else [str(i) for i in range(n)]
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = min(5.2, 1.4 + 0.3 * n)
    fig = _figure(side + 0.9, side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7 if n > 12 else 8,
                            color="white" if share[i, j] > 0.55 else (RED if i != j else INK))
    ticks = range(n) if n <= 30 else range(0, n, max(1, n // 15))
    ax.set_xticks(list(ticks), [labels[i] for i in ticks], fontsize=7, rotation=90 if n > 12 else 0)
    ax.set_yticks(list(ticks), [labels[i] for i in ticks], fontsize=7)
    ax.set_xlabel("predicted", fontsize=9, color=INK)
    ax.set_ylabel("true", fontsize=9, color=INK)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.ax.tick_params(labelsize=7)
    cbar.set_label("share of the true class", fontsize=8)
    return to_base64_png(fig)


def stage_chart(stage_seconds: dict[str, float]) -> str | None:
    """Wall time of each stage as horizontal bars, in pipeline order."""
    stages = [(k, float(v)) for k, v in (stage_seconds or {}).items() if k != "total" and v is not None]
    if not stages:
        return None
    fig = _figure(4.6, 0.5 + 0.24 * len(stages))
    ax = fig.add_subplot(1, 1, 1)
    _style(ax)
    ax.grid(False, axis="y")
    names = [k for k, _ in stages][::-1]
    secs = [v for _, v in stages][::-1]
    bars = ax.barh(names, secs, color=BLUE, height=0.62)
    longest = max(secs) or 1.0
    for bar, s in zip(bars, secs):
        ax.text(bar.get_width() + longest * 0.01, bar.get_y() + bar.get_height() / 2, f"{s:.1f} s",
                va="center", fontsize=7.5, color=INK)
    ax.set_xlim(0, longest * 1.12)
    ax.set_xlabel("seconds", fontsize=9)
    return to_base64_png(fig)


def feedback_chart(rounds: list[dict], budget_ms: float | None = None) -> str | None:
    """Predicted against measured latency of the candidate tried in each feedback round."""
    rows = [r for r in rounds or [] if _num(r.get("predicted_ms")) is not None or _num(r.get("measured_ms")) is not None]
    if not rows:
        return None
    fig = _figure(7.4, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    _style(ax)
    ax.grid(False, axis="x")
    x = np.arange(len(rows))
    w = 0.38
    pred = [_num(r.get("predicted_ms")) or 0.0 for r in rows]
    meas = [_num(r.get("measured_ms")) or 0.0 for r in rows]
    ax.bar(x - w / 2, pred, w, color=GRID, edgecolor=MUTED, label="predicted")
    ax.bar(x + w / 2, meas, w, color=[GREEN if r.get("within_budget") else RED for r in rows], label="measured")
    if budget_ms is not None:
        ax.axhline(budget_ms, color=RED, linestyle="--", linewidth=1)
        ax.text(len(rows) - 0.5, budget_ms, "budget ", color=RED, fontsize=7.5, ha="right", va="bottom")
    ax.set_xticks(x, [f"round {r.get('round', i + 1)}\n{r.get('candidate', '')}" for i, r in enumerate(rows)],
                  fontsize=7.5)
    ax.set_ylabel("latency (ms)", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return to_base64_png(fig)
