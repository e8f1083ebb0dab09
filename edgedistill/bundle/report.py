"""``report.md``: the short human summary of a build, fit for a pull-request comment."""

from __future__ import annotations

from edgedistill.data.report import DataLoadReport


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _us(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms * 1000:.1f} us"


def render_markdown(manifest: dict, stage_seconds: dict[str, float], gates: list | None = None,
                    links_html: bool = False) -> str:
    """``gates``: GateResults (or their dicts) to list, default ``manifest["gates"]`` if present;
    ``links_html``: the bundle also holds ``report.html``."""
    t, s, te = manifest["target"], manifest["student"], manifest["teacher"]
    gates = [g if isinstance(g, dict) else g.to_dict() for g in (gates if gates is not None else manifest.get("gates", []))]
    status = ""
    if gates:
        failed = [g for g in gates if not g["passed"]]
        status = f" ({len(failed)} gate(s) failed)" if failed else " (all gates passed)"
    warnings = manifest.get("warnings", [])
    lines = [
        f"# edgedistill build: {t['name']}{status}",
        "",
        # Before the headline figures: "100% agreement" of a collapsed student means nothing.
        *([f"> **Warning:** {w}" for w in warnings] + [""] if warnings else []),
        f"Student `{describe_spec(s['spec'])}`: {s['params']:,} parameters, "
        f"{s['compression']:.1f}x fewer than the teacher ({te['params']:,}).",
        *_selection_note(manifest),
        *_data_block(manifest),
        "",
        "| model | test accuracy |",
        "| --- | --- |",
        f"| teacher | {_pct(te['test_accuracy'])} |",
        f"| student from scratch (labels only) | {_pct(s['scratch_test_accuracy'])} |",
        f"| student distilled (fp32) | {_pct(s['test_accuracy_fp32'])} |",
        f"| student after QAT (torch int8 reference) | {_pct(s['test_accuracy_qat'])} |",
        *_qat_loss_note(s),
        *_training_note(s),
        "",
        "| artifact | precision | accuracy | top-1 agreement (vs) | median | p90 | size |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in manifest["artifacts"].items():
        lat = a["latency"]
        size = manifest["files"].get(name, {}).get("bytes", 0) / 1024
        lines.append(
            f"| {name} | {a['precision']} | {_pct(a['accuracy'])} | {_pct(a['agreement'])} "
            f"({a['agreement_reference']}) | {_us(lat['median_ms'])} | {_us(lat['p90_ms'])} | {size:.1f} KB |"
        )
    any_lat = next(iter(manifest["artifacts"].values()))["latency"]
    where = {"host": "this build host, not a device of the target",
             "emulated": f"{any_lat['device']}, an emulated board: its timings mean nothing for speed"}.get(
        any_lat["measured_on"], any_lat["device"])
    lines += [
        "",
        *_arm_note(manifest),
        f"Latency: batch 1, {any_lat['threads']} thread(s){_threads_note(any_lat, t)}, {any_lat['warmup']} warm-up + "
        f"{any_lat['runs']} runs, measured on {where}.",
        _budget_line(manifest),
    ]
    if gates:
        lines += ["", "| gate | result | measured against required |", "| --- | --- | --- |"]
        lines += [f"| {g['name']} | {'pass' if g['passed'] else '**FAIL**'} | {g['reason']} |" for g in gates]
    lines.append("")
    if stage_seconds:
        lines += [stage_times_line(stage_seconds), ""]
    if links_html:
        lines += ["Charts, candidates, training curves and the confusion matrix: `report.html` in the bundle.", ""]
    return "\n".join(lines)


# The stage that writes the bundle, and this report in it: its time is not known until the report is
# written (and the bundle renamed into place), so no report can state it. The reports leave it out
# and say so, rather than print the 0.0 s it has when the reports are rendered.
BUNDLE_STAGE = "bundle"
UNTIMED_BUNDLE = "the bundle stage, which writes this report, is not timed in it"


def timed_stages(stage_seconds: dict[str, float] | None) -> dict[str, float]:
    """The stage times a report can state: all but the bundle stage (and ``total``, which ends
    where the bundle stage begins)."""
    return {k: v for k, v in (stage_seconds or {}).items() if k != BUNDLE_STAGE}


def stage_times_line(stage_seconds: dict[str, float]) -> str:
    timed = timed_stages(stage_seconds)
    total = timed.pop("total", None)
    line = "Wall time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in timed.items())
    if total is not None:
        line += f"; total {total:.1f}s up to the bundle"
    return line + (f" ({UNTIMED_BUNDLE})." if BUNDLE_STAGE in stage_seconds else ".")


def _arm_note(manifest: dict) -> list[str]:
    arm = manifest.get("verification_arm")
    if not arm:
        return ["On ARM: not verified (no aarch64 board; `edgedistill board up TARGET` starts an emulated one).", ""]
    return [f"On ARM: {arm['summary']} ({arm['runtime']}, {arm['samples']} images, tolerance "
            f"{arm['tolerance_steps']} steps).", ""]


def _training_note(student: dict) -> list[str]:
    t = student.get("training")
    if not t:
        return []
    where = (f"{t['processes']} processes on {t['device']}, global batch {t['global_batch']} "
             f"({t['batch_per_process']} per process x {t['processes']})" if t["processes"] > 1
             else f"1 process on {t['device']}, batch {t['global_batch']}")
    return ["", f"Distilled on {where}, learning rate {t['lr']:g}, {t['epochs']} epochs (best {t['best_epoch']})."]


def _qat_loss_note(student: dict) -> list[str]:
    """Which of the build's loss terms quantization-aware training could not use, and why."""
    dropped = student.get("qat_loss_dropped") or {}
    if not dropped:
        return []
    why = "; ".join(f"{term}: {reason}" for term, reason in dropped.items())
    return ["", f"QAT fine-tuned with `{student.get('qat_loss')}`, the build's loss without {', '.join(dropped)} ({why})."]


def _threads_note(latency: dict, target: dict) -> str:
    threads, wanted = latency.get("threads"), target.get("threads")
    if latency.get("measured_on") == "host" and threads is not None and wanted is not None and threads < wanted:
        return f" (the target runs {wanted}; capped at this host's cores)"
    return ""


def selection_note(manifest: dict) -> str:
    """Why the student's family is what it is when it is not the teacher's (a teacher outside the
    zoo), as a sentence; empty when there is nothing to say."""
    note = manifest.get("selection", {}).get("note", "")
    return note[0].upper() + note[1:] + "." if note else ""


def init_note(manifest: dict) -> str:
    """Whether the student started from the teacher's weights, as a sentence ("" for old manifests)."""
    init = manifest.get("student", {}).get("init")
    if not init:
        return ""
    if init.get("initialised"):
        source = init.get("source") or "the teacher"
        return (f"The student started from {source}: {100 * init.get('copied_fraction', 0):.0f}% of its parameters "
                "were copied from the teacher's most important channels.")
    return f"The student started from random weights: {init.get('reason', '')}."


def resolution_note(manifest: dict) -> str:
    """The input resolution the student runs at, and how the app brings an image to it."""
    resize = manifest.get("input", {}).get("resize")
    if not resize:
        return ""
    h, w = resize["size"]
    th, tw = resize.get("training_data_size", resize["size"])
    how = f"resize every image to {h}x{w} ({resize['interpolation']}) before normalising it"
    if (h, w) == (th, tw):
        return f"Input resolution {h}x{w}, the data's own: {how}."
    return (f"Input resolution {h}x{w}, chosen by the resolution search below the data's {th}x{tw} (the "
            f"teacher scored the full-size images): {how}.")


def _selection_note(manifest: dict) -> list[str]:
    notes = [n for n in (selection_note(manifest), resolution_note(manifest), init_note(manifest)) if n]
    return ["", *notes] if notes else []


def data_notes(manifest: dict) -> list[str]:
    """What loading did to the data (unreadable images skipped, images resized), one sentence each;
    empty when the data was taken as it is (or the manifest predates the record)."""
    return DataLoadReport.from_dict(manifest.get("data", {}).get("load_report")).lines()


def _data_block(manifest: dict) -> list[str]:
    notes = data_notes(manifest)
    return ["", "Data:", *(f"- {note}" for note in notes)] if notes else []


def _budget_line(manifest: dict) -> str:
    """The target's budgets next to what the main artifact measured (size always; latency only
    when it was measured on a device of the target)."""
    t = manifest["target"]
    b = t["budgets"]
    main = manifest.get("model", "model.tflite")
    art = manifest["artifacts"].get(main, {})
    nbytes = manifest.get("files", {}).get(main, {}).get("bytes")
    size = f"size {b['model_size_kb']} KB"
    if nbytes is not None:
        kb = nbytes / 1024
        size += f" ({main} {kb:.1f} KB, {'within' if kb <= b['model_size_kb'] else '**over budget**'})"
    lat = art.get("latency") or {}
    latency = f"latency {b['latency_ms']} ms"
    if lat.get("median_ms") is not None and lat.get("measured_on") == "device":
        ok = lat["median_ms"] <= b["latency_ms"]
        latency += f" ({_us(lat['median_ms'])} on {lat.get('device')}, {'within' if ok else '**over budget**'})"
    elif lat.get("median_ms") is not None:
        latency += " (not checked: measured on the build host)"
    return f"Budgets of {t['name']}: {latency}, {size}, peak memory {b['peak_memory_mb']} MB."


def describe_spec(spec: dict) -> str:
    """A manifest's spec dict in words, as the zoo names it (``resnet w8-16-32 d1-1-1``)."""
    from edgedistill.models import spec_from_dict

    try:
        return spec_from_dict(spec).describe()
    except (KeyError, TypeError, ValueError):  # a spec this version's zoo cannot rebuild
        return ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("in_channels", "num_classes"))
