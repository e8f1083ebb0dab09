"""``report.html``: the full, self-contained account of a build, to open in any browser or attach to CI.

Everything is in the one file: styles inline, charts as base64 PNG, no scripts, no fonts or links to
fetch, so it reads the same offline, in an artifact viewer or in a mail. The manifest is the source
of every figure it shows; ``extras`` adds what the manifest does not carry (all keys optional, each
section is left out when its data is missing):

- ``candidates``: list of dicts with ``name``, ``params``, ``predicted_latency_ms`` (or None),
  ``predicted_size_kb``, ``fits``, ``why_not`` and, for the candidates that were trained, ``accuracy``
- ``chosen``: the chosen candidate's name
- ``training_curves``: ``{"distill"|"scratch"|"teacher": [{"epoch", "loss", "val_acc"}, ...]}``
- ``confusion_matrix``: list of rows (true class) of counts per predicted class, of ``model.tflite``
- ``stage_seconds``: ``{stage: seconds}`` in pipeline order, optionally with ``total``
- ``feedback_rounds``: list of dicts with ``round``, ``candidate``, ``predicted_ms``, ``measured_ms``,
  ``within_budget``
- ``gates``: list of GateResult dicts (``name``, ``passed``, ``measured``, ``required``, ``reason``)

A "Data" section lists what loading did to the data (``manifest["data"]["load_report"]``) when it
did anything.
"""

from __future__ import annotations

import html

from edgedistill.bundle import plots
from edgedistill.bundle.report import (BUNDLE_STAGE, UNTIMED_BUNDLE, data_notes, describe_spec, resolution_note,
                                       selection_note, timed_stages)


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _ms(ms) -> str:
    if ms is None:
        return "n/a"
    return f"{ms * 1000:.1f} \u00b5s" if ms < 1 else f"{ms:.2f} ms"


def _kb(nbytes) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1024:.1f} KB"


def _img(b64: str | None, alt: str) -> str:
    if b64 is None:
        return ""
    return f'<img class="chart" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _table(head: list[str], rows: list[list[str]], row_classes: list[str] | None = None,
           nums: tuple[int, ...] = ()) -> str:
    """A table of already-escaped cells; the columns in ``nums`` are right-aligned numbers."""
    ths = "".join(f'<th class="{"num" if i in nums else ""}">{h}</th>' for i, h in enumerate(head))
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        tds = "".join(f'<td class="{"num" if i in nums else ("name" if i == 0 else "")}">{c}</td>'
                      for i, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f'<table><thead><tr>{ths}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _section(title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f"<section><h2>{_e(title)}</h2>{note_html}{body}</section>"


CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f5f7fa;color:#1f2933;font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:28px 24px 48px}
header{margin-bottom:18px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:16px;margin:0 0 10px}
.sub{color:#52606d;margin:0}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600;
vertical-align:middle;margin-left:8px}
.ok{background:#dcfce7;color:#166534}.fail{background:#fee2e2;color:#991b1b}.info{background:#e0e7ff;color:#3730a3}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:18px 0}
.card{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:12px 14px}
.card .k{color:#7b8794;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px}
.card .d{color:#52606d;font-size:12px}
section{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:16px 18px;margin:14px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #eef0f3;text-align:left;vertical-align:top}
th{color:#52606d;font-weight:600;background:#f9fafb}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.chosen td{background:#ecfdf5;font-weight:600}
td.name{white-space:nowrap}
tr.failed td{background:#fef2f2}
.note{color:#52606d;font-size:12.5px;margin:0 0 10px}
img.chart{display:block;max-width:100%;height:auto;margin:6px auto 10px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:14px;align-items:start}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f5f9;padding:1px 4px;
border-radius:4px}
footer{color:#7b8794;font-size:12px;margin-top:18px}
ul.warn{color:#9a3412;font-weight:600}
@media (max-width:760px){.two{grid-template-columns:1fr}}
"""


def _where(lat: dict) -> str:
    """The device and runtime behind one latency figure, in words."""
    if not lat or lat.get("median_ms") is None:
        return "not measured"
    info = lat.get("device_info") or {}
    hw = info.get("model") or info.get("soc") or info.get("cpu") or ""
    place = {"host": "build host", "emulated": "emulated board"}.get(lat.get("measured_on"), "device")
    return (f"{lat.get('device')} ({place}{', ' + hw if hw else ''}), {lat.get('runtime')}, "
            f"{lat.get('delegate')}, {lat.get('threads')} threads")


def _header(m: dict, gates: list[dict]) -> str:
    t, s, te = m.get("target", {}), m.get("student", {}), m.get("teacher", {})
    badge = ""
    if gates:
        failed = [g for g in gates if not g.get("passed")]
        badge = (f'<span class="badge fail">{len(failed)} gate(s) failed</span>' if failed
                 else f'<span class="badge ok">all {len(gates)} gates passed</span>')
    spec = describe_spec(s["spec"]) if s.get("spec") else "student"
    sub = (f"Student <code>{_e(spec)}</code>: {s.get('params', 0):,} parameters, "
           f"{s.get('compression', 0):.1f}\u00d7 fewer than the teacher ({te.get('params', 0):,}).")
    return (f"<header><h1>edgedistill build: {_e(t.get('name', '?'))}{badge}</h1>"
            f'<p class="sub">{_e(t.get("description", ""))}</p><p class="sub">{sub}</p></header>')


def _cards(m: dict) -> str:
    main = m.get("model", "model.tflite")
    art = m.get("artifacts", {}).get(main, {})
    lat = art.get("latency") or {}
    budgets = m.get("target", {}).get("budgets", {})
    nbytes = m.get("files", {}).get(main, {}).get("bytes")
    where = {"host": "build host, not the target", "emulated": "emulated board: no measure of speed"}.get(
        lat.get("measured_on"), lat.get("device") or "")
    cards = [
        (f"{main} accuracy", _pct(art.get("accuracy")), f"teacher {_pct(m.get('teacher', {}).get('test_accuracy'))}"),
        ("median latency", _ms(lat.get("median_ms")), f"{where}; budget {budgets.get('latency_ms', 'n/a')} ms"),
        ("model size", _kb(nbytes), f"budget {budgets.get('model_size_kb', 'n/a')} KB"),
        ("top-1 agreement", _pct(art.get("agreement")), f"vs {art.get('agreement_reference', 'reference')}"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div><div class="d">{_e(d)}</div></div>'
        for k, v, d in cards) + "</div>"


def _accuracy_section(m: dict) -> str:
    s, te = m.get("student", {}), m.get("teacher", {})
    arts = m.get("artifacts", {})
    rows = [
        ["teacher", _pct(te.get("test_accuracy"))],
        ["student from scratch (labels only)", _pct(s.get("scratch_test_accuracy"))],
        ["student distilled (fp32, torch)", _pct(s.get("test_accuracy_fp32"))],
        ["student after QAT (int8, torch reference)", _pct(s.get("test_accuracy_qat"))],
    ]
    rows += [[f"<code>{_e(name)}</code> ({_e(a.get('precision'))})", _pct(a.get("accuracy"))] for name, a in arts.items()]
    counts = m.get("data", {}).get("counts", {})
    note = f"On the {counts.get('test', '?')} held-out test images of {_e(m.get('data', {}).get('name', 'the data'))}."
    return _section("Accuracy", _table(["model", "test accuracy"], rows, nums=(1,)), note)


def _artifacts_section(m: dict) -> str:
    files = m.get("files", {})
    rows = []
    for name, a in m.get("artifacts", {}).items():
        lat = a.get("latency") or {}
        rows.append([f"<code>{_e(name)}</code>", _e(a.get("precision")), _pct(a.get("accuracy")),
                     f"{_pct(a.get('agreement'))}", _ms(lat.get("median_ms")), _ms(lat.get("p90_ms")),
                     _kb(files.get(name, {}).get("bytes")), _e(_where(lat))])
    any_lat = next((a.get("latency") or {} for a in m.get("artifacts", {}).values()), {})
    note = (f"Batch 1, {any_lat.get('warmup', '?')} warm-up + {any_lat.get('runs', '?')} timed runs. "
            "Agreement is top-1 against the torch model each artifact was exported from.")
    if any_lat.get("measured_on") == "host":
        note += " <b>Latency was measured on the build host, not on a device of the target.</b>"
    elif any_lat.get("measured_on") == "emulated":
        note += (" <b>Latency was measured on an emulated board (qemu-user): its kernels are the device's, its "
                 "timings mean nothing for speed.</b>")
    arm = m.get("verification_arm")
    note += (f" On ARM: {_e(arm['summary'])} ({_e(arm['runtime'])}, {arm['samples']} images)." if arm
             else " Not verified on ARM (no aarch64 board).")
    table = _table(["artifact", "precision", "accuracy", "agreement", "median", "p90", "size", "measured on"],
                   rows, nums=(2, 3, 4, 5, 6))
    return _section("Artifacts", table, note)


def _candidates_section(m: dict, extras: dict) -> str:
    cands = extras.get("candidates") or m.get("selection", {}).get("candidates") or []
    if not cands:
        return ""
    chosen = extras.get("chosen") or m.get("selection", {}).get("chosen")
    budget = m.get("target", {}).get("budgets", {}).get("latency_ms")
    chart = _img(plots.candidates_chart(cands, chosen, budget), "accuracy against latency of the candidates")
    rows, classes = [], []
    for c in cands:
        is_chosen = c.get("name") == chosen
        rows.append([
            _e(c.get("name", "?")) + (" \u2605" if is_chosen else ""),
            f"{c.get('params', 0):,}",
            "n/a" if c.get("predicted_size_kb") is None else f"{c['predicted_size_kb']:.1f} KB",
            _ms(c.get("predicted_latency_ms")),
            _pct(c.get("accuracy")) if c.get("accuracy") is not None else "not trained",
            "yes" if c.get("fits", True) else "no",
            _e(c.get("why_not") or ""),
        ])
        classes.append("chosen" if is_chosen else "")
    table = _table(["candidate", "parameters", "predicted size", "predicted latency", "accuracy", "fits", "why not"],
                   rows, classes, nums=(1, 2, 3, 4))
    rule = m.get("student", {}).get("selection_rule", "")
    note = f"{len(cands)} students shaped like the teacher were considered; \u2605 marks the chosen one"
    note += f" ({_e(rule)})." if rule else "."
    note += " Accuracy is the distilled fp32 student's on the test split; only trained candidates have one."
    for extra in (selection_note(m), resolution_note(m)):
        if extra:
            note += f" <b>{_e(extra)}</b>"
    return _section("Candidates", chart + table, note)


def _feedback_section(m: dict, extras: dict) -> str:
    rounds = extras.get("feedback_rounds") or []
    if not rounds:
        return ""
    budget = m.get("target", {}).get("budgets", {}).get("latency_ms")
    rows = [[str(r.get("round", i + 1)), _e(r.get("candidate", "")), _ms(r.get("predicted_ms")),
             _ms(r.get("measured_ms")), "yes" if r.get("within_budget") else "no"] for i, r in enumerate(rounds)]
    classes = ["" if r.get("within_budget") else "failed" for r in rounds]
    chart = _img(plots.feedback_chart(rounds, budget), "predicted against measured latency per feedback round")
    note = "Each round benchmarks the chosen candidate; a missed budget recalibrates the latency model and picks again."
    return _section("Latency feedback rounds", chart + _table(["round", "candidate", "predicted", "measured",
                                                              "within budget"], rows, classes, nums=(0, 2, 3)), note)


def _gates_section(gates: list[dict]) -> str:
    if not gates:
        return ""
    rows = [[_e(g.get("name")), '<span class="badge ok">pass</span>' if g.get("passed") else
             '<span class="badge fail">fail</span>', _e(g.get("reason", ""))] for g in gates]
    return _section("Release gates", _table(["gate", "result", "measured against required"], rows))


def _curves_and_confusion(m: dict, extras: dict) -> str:
    out = []
    curves = _img(plots.training_chart(extras.get("training_curves") or {}), "training curves")
    if curves:
        out.append(_section("Training", curves, "Loss on the training split and accuracy on the validation split, "
                                                "per epoch."))
    cm = extras.get("confusion_matrix")
    if cm:
        labels = m.get("labels")
        main = m.get("model", "model.tflite")
        out.append(_section("Confusion matrix", _img(plots.confusion_chart(cm, labels), "confusion matrix"),
                            f"<code>{_e(main)}</code> on the test split; rows are the true class."))
    return "".join(out)


def _stages_section(extras: dict) -> str:
    secs = extras.get("stage_seconds") or {}
    chart = _img(plots.stage_chart(timed_stages(secs)), "wall time per stage")
    if not chart:
        return ""
    total = secs.get("total")
    note = f"Total {total:.1f} s up to the bundle. " if total else ""
    note += "Stages reused from the run directory take almost no time."
    if BUNDLE_STAGE in secs:
        note += f" {UNTIMED_BUNDLE[0].upper()}{UNTIMED_BUNDLE[1:]}."
    return _section("Wall time per stage", chart, note)


def _warnings_section(m: dict) -> str:
    """Above the headline cards: a collapsed student's "100% agreement" must not read as good news."""
    warnings = m.get("warnings") or []
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return _section("Warnings", f'<ul class="warn">{items}</ul>',
                    "Said during the build; the figures below are measured, but mean little while these hold.")


def _data_section(m: dict) -> str:
    notes = data_notes(m)
    if not notes:
        return ""
    items = "".join(f"<li>{_e(note)}</li>" for note in notes)
    return _section("Data", f"<ul>{items}</ul>", "What loading did to the data before training; "
                                                 "<code>manifest.json</code> lists every skipped file.")


def _provenance(m: dict) -> str:
    data = m.get("data", {})
    rows = [
        ["target", _e(f"{m.get('target', {}).get('name')}: {m.get('target', {}).get('cpu')}, "
                      f"{m.get('target', {}).get('runtime')} + {m.get('target', {}).get('delegate')}")],
        ["data", _e(f"{data.get('name')} (fingerprint {str(data.get('fingerprint', ''))[:16]}\u2026), "
                    f"{data.get('counts', {})}")],
        ["seed", _e(m.get("seed"))],
        ["loss", _e(m.get("student", {}).get("loss", ""))],
        ["versions", _e(", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))],
    ]
    return _section("Provenance", _table(["", ""], rows))


def render_html(manifest: dict, extras: dict | None = None) -> str:
    """The report page for ``manifest``; ``extras`` (see the module docstring) adds optional sections."""
    extras = extras or {}
    gates = extras.get("gates") or manifest.get("gates") or []
    stages = _stages_section(extras)
    accuracy = _accuracy_section(manifest)
    body = "".join([
        _header(manifest, gates),
        _warnings_section(manifest),
        _cards(manifest),
        _gates_section(gates),
        _data_section(manifest),
        f'<div class="two">{accuracy}{stages}</div>' if stages else accuracy,
        _artifacts_section(manifest),
        _candidates_section(manifest, extras),
        _feedback_section(manifest, extras),
        _curves_and_confusion(manifest, extras),
        _provenance(manifest),
    ])
    title = f"edgedistill build: {manifest.get('target', {}).get('name', '')}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}<footer>Generated by edgedistill from manifest.json "
            f"(schema {_e(manifest.get('schema_version'))}); self-contained, no external resources."
            f"</footer></main></body></html>\n")


# --- gathering extras from a finished build ---------------------------------------------------------


def _history(train) -> list[dict]:
    """A TrainResult's curve as the charts draw it."""
    return [{"epoch": h.epoch, "loss": h.loss, "val_acc": h.val_acc} for h in train.history]


def confusion_matrix(labels, predictions, num_classes: int) -> list[list[int]]:
    import numpy as np

    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return m.tolist()


def extras_from_result(result, main_predictions=None) -> dict:
    """Collect ``extras`` from a pipeline ``BuildResult``. ``main_predictions``: the main artifact's
    top-1 answers on the test split, as verification recorded them (the confusion matrix)."""
    import dataclasses

    selection = result.selection
    chosen = selection.chosen.name if selection.chosen else None
    cands = []
    for cand in selection.candidates:
        c = cand.to_dict()
        if c.get("name") == chosen and c.get("accuracy") is None:
            c["accuracy"] = result.student.test_acc
        cands.append(c)
    extras: dict = {"candidates": cands, "chosen": chosen} if cands else {}
    curves = {"distill": _history(result.student.train), "teacher": list(result.teacher.history)}
    if result.scratch is not None:
        curves["scratch"] = _history(result.scratch.train)
    extras["training_curves"] = {k: v for k, v in curves.items() if v}
    if result.stage_seconds:
        extras["stage_seconds"] = dict(result.stage_seconds)
    if result.feedback_rounds:
        extras["feedback_rounds"] = [dataclasses.asdict(r) for r in result.feedback_rounds]
    if result.gates:
        extras["gates"] = [g.to_dict() for g in result.gates]
    if main_predictions is not None:
        data = result.data
        extras["confusion_matrix"] = confusion_matrix(data.test.labels, main_predictions, data.num_classes)
    return extras
