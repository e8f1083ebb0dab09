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
    "a target TOML file [default: android-arm64].",
    "the bundle goes to OUT/TARGET [default: dist].",
    "Build config TOML [default: ./edgedistill.toml if present].",
    "Run directory for stage results [default: runs/TARGET].",
    "ImageFolder tree or .npz [default: built-in digits].",
    "adb[:SERIAL] [default: target's device or local].",
])
def test_build_help_shows_the_defaults_that_are_not_values(build_help, note):
    assert note in build_help


def _build_options():
    """(click option, BuildConfig field) of every build option that sets a config field: the flag's
    own name, or its alias (``--distill`` sets ``loss``), as a config file spells it too."""
    import dataclasses

    import typer

    from edgedistill.cli import app
    from edgedistill.config import FLAG_ALIASES, BuildConfig

    fields = {f.name: f for f in dataclasses.fields(BuildConfig)}
    build = typer.main.get_command(app).commands["build"]
    for param in build.params:
        name = FLAG_ALIASES.get(param.name, param.name)
        if name in fields:
            yield param, fields[name]


def _shown(value) -> str | None:
    """How a help text writes a BuildConfig default; None where the default is "unset" (an empty
    string or list, None), which the help describes in words instead."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


BUILD_OPTIONS = list(_build_options())


def test_the_build_options_that_set_config_fields_are_found():
    # not a vacuous walk: the options that set config fields are found
    assert len(BUILD_OPTIONS) >= 35
    assert {f.name for _, f in BUILD_OPTIONS} >= {"epochs", "loss", "scratch_baseline", "gate_drop_reference",
                                                   "strict", "min_compression", "device"}


@pytest.mark.parametrize("param,field", BUILD_OPTIONS, ids=[p.name for p, _ in BUILD_OPTIONS])
def test_build_help_states_the_build_config_default(build_help, param, field):
    """The help's ``[default: X]`` is BuildConfig's default: a default changed without its help fails."""
    import dataclasses

    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    notes = re.findall(r"\[default: ([^\]]*)\]", param.help or "")
    assert len(notes) == 1, f"--{param.name}: its help states no default: {param.help!r}"
    expected = _shown(default)
    if expected is not None:
        assert notes[0] == expected, f"--{param.name}: help says [default: {notes[0]}], BuildConfig {default!r}"
    assert f"[default: {notes[0]}]" in build_help  # and the rendered help keeps it


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
                 "[default: ~/.ssh/config]", "[default: $EDGEDISTILL_LATENCY_STORE or <cache>/latency_store.jsonl]",
                 "in parallel [default: local]."):
        assert note in text, note
    assert "<bool>" not in text and "BOOLEAN" not in text


def _commands(command=None, path=()):
    """Every leaf command of the CLI, with its words (``("targets", "show")``)."""
    import typer

    from edgedistill.cli import app

    command = command or typer.main.get_command(app)
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "commands", None):
            yield from _commands(sub, (*path, name))
        if sub.callback is not None:
            yield (*path, name), sub


def _option_entries(text: str) -> dict[str, str]:
    """The rendered help's option entries, by their first flag: each entry's lines rejoined."""
    entries, current = {}, None
    for line in text.split("Options:", 1)[1].split("Commands:", 1)[0].splitlines():
        match = re.match(r"  (-\S+?)[,\s]", line + " ")
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("   "):
            entries[current] += " " + line.strip()
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


ALL_COMMANDS = list(_commands())


def test_the_commands_are_found():
    names = {" ".join(words) for words, _ in ALL_COMMANDS}
    assert {"build", "select", "bench", "verify", "calibrate", "targets show", "board up"} <= names, names


@pytest.mark.parametrize("words,command", ALL_COMMANDS, ids=[" ".join(w) for w, _ in ALL_COMMANDS])
def test_every_option_of_every_command_shows_its_default(words, command):
    """An option that takes a value, or an on/off pair, shows its default; a lone switch
    (``--json``) is off unless given, which its form says."""
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", *words, "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200", "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = _option_entries(proc.stdout)
    missing = []
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        if param.is_flag and not param.secondary_opts:
            continue
        entry = entries.get(param.opts[0]) or next(e for f, e in entries.items() if f in param.opts)
        if "[default:" not in entry:
            missing.append(entry)
    assert not missing, "options without a shown default:\n" + "\n".join(missing)


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
