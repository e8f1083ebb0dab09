"""``report.md``: the short human summary of a build, fit for a pull-request comment."""

from __future__ import annotations


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _us(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms * 1000:.1f} us"


def render_markdown(manifest: dict, stage_seconds: dict[str, float]) -> str:
    t, s, te = manifest["target"], manifest["student"], manifest["teacher"]
    lines = [
        f"# edgedistill build: {t['name']}",
        "",
        f"Student `{_describe(s['spec'])}`: {s['params']:,} parameters, "
        f"{s['compression']:.1f}x fewer than the teacher ({te['params']:,}).",
        "",
        "| model | test accuracy |",
        "| --- | --- |",
        f"| teacher | {_pct(te['test_accuracy'])} |",
        f"| student from scratch (labels only) | {_pct(s['scratch_test_accuracy'])} |",
        f"| student distilled (fp32) | {_pct(s['test_accuracy_fp32'])} |",
        f"| student after QAT (torch int8 reference) | {_pct(s['test_accuracy_qat'])} |",
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
    where = "this build host, not a device of the target" if any_lat["measured_on"] == "host" else any_lat["device"]
    lines += [
        "",
        f"Latency: batch 1, {any_lat['threads']} thread(s), {any_lat['warmup']} warm-up + {any_lat['runs']} runs, "
        f"measured on {where}.",
        f"Budgets of {t['name']}: {t['budgets']['latency_ms']} ms, {t['budgets']['model_size_kb']} KB, "
        f"{t['budgets']['peak_memory_mb']} MB.",
        "",
        "Wall time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in stage_seconds.items()),
        "",
    ]
    return "\n".join(lines)


def _describe(spec: dict) -> str:
    if spec.get("family") == "resnet":
        return f"resnet w{'-'.join(map(str, spec['widths']))} d{'-'.join(map(str, spec['depths']))}"
    return ", ".join(f"{k}={v}" for k, v in spec.items())
