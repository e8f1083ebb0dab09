"""With ``--json``, stdout holds one JSON document whatever stops the command, usage errors included
(docs/release-integration.md promises it, and CI pipelines pipe it into ``jq``); and every command the
release-integration guide shows parses as written.

The CLI runs as a subprocess, as a CI step runs it: a usage error is caught by the command-line
layer before any command code runs, so only the real process shows what lands on stdout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "release-integration.md"


def _edgedistill() -> list[str]:
    script = Path(sys.executable).parent / "edgedistill"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgedistill.cli"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*_edgedistill(), *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("args,message", [
    (("build", "--json", "--gate-size-kb", "64"), "No such option: --gate-size-kb"),  # the guide's old flag
    (("build", "--json", "--epochs", "many"), "Invalid value for '--epochs'"),
    (("select", "--json", "--no-such-option"), "No such option: --no-such-option"),
    (("select", "--json", "--input-shape", "3", "224"), "--input-shape"),
    (("bench", "--json", "model.tflite", "--no-such-option"), "No such option: --no-such-option"),
    (("bench", "--json", "model.tflite", "--runs", "0"), "Invalid value for '--runs'"),
    (("verify", "--json", "--no-such-option", "dist/x"), "No such option: --no-such-option"),
    (("verify", "--json"), "Missing argument"),
])
def test_a_usage_error_under_json_prints_the_input_error_document(tmp_path, args, message):
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)  # the whole of stdout is one document
    assert doc["status"] == "input_error" and doc["exit_code"] == 2
    assert message in doc["reason"]
    assert message in proc.stderr  # the usage message still goes to stderr, as without --json
    if args[0] == "build":  # build's document is its summary, as the guide describes it
        assert doc["bundle"] is None and doc["gates"] == [] and doc["model"] is None
    if args[0] == "verify":  # verify's is its report
        assert doc["passed"] is False and doc["checks"] == [] and doc["problems"] == [doc["reason"]]


@pytest.mark.parametrize("args", [
    ("select", "--json", "--target", "no-such-target"),
    ("bench", "--json", "no-such-model.tflite"),
])
def test_bad_input_under_json_prints_a_document_too(tmp_path, args):
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "input_error" and doc["exit_code"] == 2 and doc["reason"]


def test_without_json_a_usage_error_leaves_stdout_empty(tmp_path):
    proc = _run("build", "--gate-size-kb", "64", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "No such option: --gate-size-kb" in proc.stderr


# --- docs/release-integration.md ------------------------------------------------------------------


def _doc_commands() -> list[list[str]]:
    """Every ``edgedistill`` command line in the guide: in code blocks (shell and YAML lines, their
    continuations joined, cut at the first redirection, pipe or comment), in inline code spans that
    give arguments, and the Gradle task's ``commandLine(...)`` (its ``val``s substituted)."""
    text = DOC.read_text()
    commands = []
    kotlin_vals = dict(re.findall(r'val (\w+) = "([^"$]*)"', text))
    for match in re.finditer(r"commandLine\(\s*(.*?)\)", text, re.S):
        words = [w[1:-1] if w.startswith('"') else kotlin_vals[w]
                 for w in re.findall(r'"[^"]*"|\b[A-Za-z_]\w*\b', match.group(1))]
        if words and words[0] == "edgedistill":
            commands.append(words)
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    blocks += re.findall(r"(?m)^    (edgedistill .*)$", text)  # indented blocks
    lines = [line for block in blocks for line in re.sub(r"\\\n\s*", " ", block).splitlines()]
    lines += [span for span in re.findall(r"`(edgedistill [^`]+)`", text) if len(span.split()) > 2]
    for line in lines:
        at = line.find("edgedistill ")
        if at < 0 or "commandLine" in line:
            continue
        words = shlex.split(re.split(r"\s(?:>|\||\|\||#|;|&&)\s", line[at:])[0])
        if len(words) > 1 and words[1] in _subcommands():
            commands.append(words)
    return commands


def _subcommands() -> set[str]:
    import typer

    from edgedistill.cli import app

    return set(typer.main.get_command(app).commands)


def _parse(words: list[str]) -> None:
    """Parse a command line as the CLI would, converting every value, without running the command:
    an unknown option or a bad value raises click's UsageError."""
    import typer

    from edgedistill.cli import app

    command, rest = typer.main.get_command(app), list(words[1:])
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        command = command.commands[rest.pop(0)]
    command.make_context(words[0], rest)


def test_every_command_in_the_release_guide_parses():
    commands = _doc_commands()
    # the Gradle task, the CI step, the Actions step, the verify lines: not a vacuous check
    assert sum(c[:2] == ["edgedistill", "build"] for c in commands) >= 3, commands
    assert sum(c[:2] == ["edgedistill", "verify"] for c in commands) >= 3, commands
    for words in commands:
        _parse(words)


def test_the_guide_names_the_gate_flags_that_exist():
    text = DOC.read_text()
    flags = set(re.findall(r"`(--[a-z][a-z0-9-]*)", text))
    import typer

    from edgedistill.cli import app

    build = typer.main.get_command(app).commands["build"]
    known = {opt for p in build.params for opt in (*p.opts, *p.secondary_opts)}
    known |= {"--bench-device", "--help"}
    assert {"--max-size-kb", "--max-latency-ms", "--min-accuracy", "--max-accuracy-drop"} <= flags
    assert flags <= known, flags - known


def test_the_guides_json_example_has_the_summarys_fields():
    from edgedistill.gates import GateResult, summary_json

    block = re.search(r"```json\n(.*?)```", DOC.read_text(), re.S).group(1)
    example = json.loads(block)
    gate = GateResult("max_size_kb", False, 64.2, 64.0, "model.tflite is 64.2 KB > required 64 KB", "KB")
    manifest = {"model": "model.tflite", "artifacts": {"model.tflite": {}}, "files": {}}
    real = summary_json("gate_failed", [gate], 4, "x", manifest, None)
    assert set(example) == set(real)
    assert all(set(g) == set(real["gates"][0]) for g in example["gates"])
    assert set(example["model"]) <= set(real["model"])
