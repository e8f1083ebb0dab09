"""Every command the README and docs/ show runs as written.

Commands are taken from code blocks (shell lines, YAML ``run:`` steps, Gradle's ``commandLine(...)``)
and from inline code spans that start with a command. Each ``edgedistill`` command is parsed by the
real CLI with ``--help`` appended (an unknown option, a missing value or an extra argument fails
the parse before help is printed); each ``python scripts/X.py`` command's options must be ones its
own ``--help`` lists; ``edgedistill targets`` and ``targets show`` run for real. And every option
named in an inline code span anywhere in the docs is an option of some command.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "<", "&"}
# synopsis notation in inline spans: "[--json]" is an optional part, "up|down|status" alternatives,
# "..." more of the same
PLACEHOLDER = "PLACEHOLDER"


def _fences(text: str):
    """(language, body) of every fenced code block."""
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        yield m.group(1), m.group(2)


def _inline_spans(text: str) -> list[str]:
    without_fences = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", without_fences)


def _shell_lines(body: str) -> list[str]:
    """Logical lines (backslash continuations joined), with YAML's `run: ` prefix taken off."""
    joined = re.sub(r"\\\n\s*", " ", body)
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"^\s*(-\s+)?run:\s*\|?\s*", "", line).strip()
        if line:
            lines.append(line)
    return lines


def _gradle_commands(body: str) -> list[list[str]]:
    """commandLine("edgedistill", "build", "--target", someVariable, ...): literals as they are,
    a variable as a placeholder value."""
    out = []
    for m in re.finditer(r"commandLine\((.*?)\)\s*$", body, re.S | re.M):
        args = [a.strip() for a in m.group(1).split(",") if a.strip()]
        if args and args[-1] == "...":
            continue  # "commandLine(".../edgedistill", "build", ...)": a fragment in prose
        out.append([a[1:-1] if a.startswith('"') and a.endswith('"') else PLACEHOLDER for a in args])
    return out


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return []


def _commands_in(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """("edgedistill", args) and ("script", [path, *args]) for every command in one shell line."""
    found = []
    for i, tok in enumerate(tokens):
        head = None
        if Path(tok).name == "edgedistill" and not tok.startswith("-"):
            if i >= 1 and tokens[i - 1] == "-m" and not (i >= 2 and tokens[i - 2].startswith("python")) \
                    and "torchrun" not in tokens[:i] and "torch.distributed.run" not in tokens[:i]:
                continue  # some other tool's -m
            head, start = "edgedistill", i + 1
        elif re.fullmatch(r"scripts/\w+\.py", tok) and i >= 1 and Path(tokens[i - 1]).name.startswith("python"):
            head, start = "script", i
        if head is None:
            continue
        args = []
        for t in tokens[start:]:
            if t in SHELL_OPERATORS or t.startswith((">", "2>")):
                break
            if t != "...":  # "and the rest as above"
                args.append(t)
        found.append((head, args))
    return found


def _synopsis(tokens: list[str]) -> list[str]:
    """An inline synopsis as a runnable command: optional parts taken, the first alternative, "..."
    dropped."""
    out = []
    for t in tokens:
        if t in SHELL_OPERATORS:  # a pipe, not a choice
            out.append(t)
            continue
        t = t.strip("[]")
        if t and t != "...":
            out.append(t.split("|")[0])
    return out


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, kind, args) of every command shown."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for lang, body in _fences(text):
            if lang in ("kotlin", "kts"):
                for argv in _gradle_commands(body):
                    found += [(f"{doc.name} (Gradle)", kind, args) for kind, args in _commands_in(argv)]
                continue
            if lang not in ("", "bash", "sh", "shell", "yaml", "yml", "console"):
                continue
            for line in _shell_lines(body):
                found += [(doc.name, kind, args) for kind, args in _commands_in(_tokens(line))]
        for line in re.findall(r"^(?: {4}|\t)(edgedistill .*)$", text, re.M):  # indented code blocks
            found += [(doc.name, kind, args) for kind, args in _commands_in(_tokens(line))]
        for span in _inline_spans(text):
            tokens = _tokens(span)
            if tokens and (Path(tokens[0]).name == "edgedistill" or tokens[0] in ("python", "python3", "time")):
                found += [(f"{doc.name} (inline)", kind, args) for kind, args in _commands_in(_synopsis(tokens))]
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands_to_check():
    kinds = {kind for _, kind, _ in COMMANDS}
    assert kinds == {"edgedistill", "script"} and len(COMMANDS) > 30, COMMANDS
    # the guides release engineers follow are among them
    assert any(where.startswith("release-integration.md") for where, _, _ in COMMANDS)


@functools.lru_cache(maxsize=None)
def _cli() -> click.Command:
    from edgedistill.cli import app

    return typer.main.get_command(app)


def _parse(args: list[str]) -> tuple[int, str]:
    """Run the real CLI on ``args + --help``: exit 0 with help, or a usage error (exit 2)."""
    from click.testing import CliRunner

    result = CliRunner().invoke(_cli(), [*args, "--help"], prog_name="edgedistill")
    return result.exit_code, result.output


EDGEDISTILL = sorted({tuple(args) for _, kind, args in COMMANDS if kind == "edgedistill"})


@pytest.mark.parametrize("args", EDGEDISTILL, ids=[" ".join(a)[:80] for a in EDGEDISTILL])
def test_every_documented_edgedistill_command_parses(args):
    where = [w for w, k, a in COMMANDS if k == "edgedistill" and tuple(a) == args]
    code, output = _parse(list(args))
    assert code == 0, f"{where}: `edgedistill {' '.join(args)}` is refused by the CLI:\n{output}"
    assert "Usage:" in output


def _option_names(command: click.Command) -> set[str]:
    names = set()
    for p in command.params:
        names.update(p.opts)
        names.update(p.secondary_opts)
    if hasattr(command, "commands"):  # a group (typer bundles its own click classes)
        for sub in command.commands.values():
            names |= _option_names(sub)
    return names


@functools.lru_cache(maxsize=None)
def _script_help(path: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / path), "--help"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, f"{path} does not answer --help:\n{done.stderr[-2000:]}"
    return done.stdout


SCRIPTS = sorted({tuple(args) for _, kind, args in COMMANDS if kind == "script"})


@pytest.mark.slow  # each script imports torch in a process of its own
@pytest.mark.parametrize("args", SCRIPTS, ids=[" ".join(a)[:80] for a in SCRIPTS])
def test_every_documented_script_command_uses_options_its_script_has(args):
    path, *rest = args
    assert (REPO / path).is_file(), f"{path} is shown in the docs and does not exist"
    help_text = _script_help(path)
    for flag in (t.split("=")[0] for t in rest if t.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), \
            f"`python {' '.join(args)}`: {path} has no option {flag}"


def _every_option() -> set[str]:
    names = _option_names(_cli())
    for path in sorted((REPO / "scripts").glob("*.py")):
        names |= set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", path.read_text()))
    return names


# options of other tools that the docs name in passing (torchrun, pip, apt-get, jq, srun)
OTHER_TOOLS = {"--standalone", "--nproc-per-node", "--nnodes", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id",
               "--no-deps", "--upgrade", "--ntasks-per-node", "--gpus-per-node", "--nodes", "--help"}


def test_every_option_the_docs_name_exists():
    known = _every_option() | OTHER_TOOLS
    missing = []
    for doc in DOCS:
        for span in _inline_spans(doc.read_text()):
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", span):
                if flag not in known:
                    missing.append(f"{doc.name}: `{span}` names {flag}")
    assert not missing, "\n".join(missing)


def test_the_targets_commands_run_for_real():
    from click.testing import CliRunner

    listing = CliRunner().invoke(_cli(), ["targets"], prog_name="edgedistill")
    assert listing.exit_code == 0, listing.output
    for name in ("android-arm64", "rpi4", "rpi5", "host"):
        assert name in listing.output
        shown = CliRunner().invoke(_cli(), ["targets", "show", name], prog_name="edgedistill")
        assert shown.exit_code == 0 and name in shown.output, shown.output
