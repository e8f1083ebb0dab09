"""``--help`` shows what the help strings say: their ``[default: ...]`` notes and bracketed forms
such as ``ssh://[user@]host[:port]`` survive (rich markup used to read them as tags and drop them),
and on/off flags show no ``<bool>`` type."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def _help(*command: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", *command, "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200", "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The help is wrapped to the terminal: rejoin words split at a hyphen, then collapse whitespace.
    return " ".join(re.sub(r"-\n\s+", "-", proc.stdout).split())


@pytest.fixture(scope="module")
def build_help() -> str:
    return _help("build")


@pytest.mark.parametrize("note", [
    "Distillation epochs [default: 40].",
    "Epochs of the built-in teacher [default: 30].",
    "Quantization-aware fine-tuning epochs [default: 4].",
    "a target TOML file [default: android-arm64].",
    "the bundle goes to OUT/TARGET [default: dist].",
    "Build config TOML [default: ./edgedistill.toml if present].",
    "Run directory for stage results [default: runs/TARGET].",
    "shuffling [default: 0];",
    "ImageFolder tree or .npz [default: built-in digits].",
    "Timed benchmark runs [default: 100].",
    "misses the budget [default: 3].",
    "for comparison [default: on].",
    "Training device: auto, cpu, cuda, cuda:N [default: auto].",
    "adb[:SERIAL] [default: target's device or local].",
])
def test_build_help_shows_the_defaults(build_help, note):
    assert note in build_help


def test_build_help_has_the_teacher_gate(build_help):
    assert "--min-teacher-accuracy" in build_help
    assert "the teacher's validation accuracy at least this fraction" in build_help


def test_build_help_flags_show_both_forms_and_no_bool_metavar(build_help):
    for flag in ("--strict / --no-strict", "--augment / --no-augment", "--scratch / --no-scratch",
                 "--init-from-teacher / --no-init-from-teacher"):
        assert flag in build_help
    assert "<bool>" not in build_help and "BOOLEAN" not in build_help


def test_bench_help_keeps_brackets_and_defaults():
    text = _help("bench")
    assert "ssh://[user@]host[:port]" in text and "adb[:SERIAL]" in text
    for note in ("Inference threads [default: 1].", "Untimed warm-up runs [default: 10].", "Timed runs [default: 100].",
                 "[default: xnnpack for .tflite, cpu for .onnx]", "[default: 300]", "[default: python3]",
                 "[default: ~/.ssh/config]", "[default: $EDGEDISTILL_LATENCY_STORE or <cache>/latency_store.jsonl]"):
        assert note in text, note
    assert "<bool>" not in text and "BOOLEAN" not in text


@pytest.mark.parametrize("command,note", [
    (("select",), "Latency model JSON [default: calibration/TARGET.json]."),
    (("calibrate",), "Write the fitted model here [default: <cache>/calibration/TARGET.json]."),
    (("targets", "show"), "Print JSON."),
    (("verify",), "Print a JSON report."),
])
def test_other_commands_help(command, note):
    text = _help(*command)
    assert note in text
    assert "<bool>" not in text and "BOOLEAN" not in text


def test_the_channels_flag_that_error_messages_suggest_exists():
    import subprocess
    import sys

    from edgedistill.teacher import load

    assert "--channels 1 or 3" in open(load.__file__).read()  # the hint infer_io gives
    out = subprocess.run([sys.executable, "-m", "edgedistill.cli", "build", "--help"], capture_output=True,
                         text=True, env={**__import__("os").environ, "COLUMNS": "200"}).stdout
    assert "--channels" in out
