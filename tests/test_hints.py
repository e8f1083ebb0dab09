"""Every ``--flag`` an error's hint suggests is one the command it would be typed into accepts, with
as many values as the hint shows: a hint is advice to retype a command, and advice the CLI rejects
("No such option", or ``--image-size H W`` where typer takes one value per flag) costs the user
another failed run.

The hints are read from the package's source (every ``hint=...`` keyword, f-strings' literal parts
included); the commands are the real CLI's click commands.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

import edgedistill
from edgedistill.cli import app

PACKAGE = Path(edgedistill.__file__).parent

# Where a hint raised in a module is read: the commands whose runs reach that module. A hint that
# names its command ("run `edgedistill calibrate --target X`") is checked against that one instead.
COMMANDS_BY_MODULE = [
    ("select/cli.py", ("select",)),
    ("bench/", ("bench",)),
    ("hardware/cli.py", ("calibrate",)),
    ("hardware/calibrate.py", ("calibrate",)),
    ("board/", ("board up",)),
    ("verify/bundle.py", ("verify",)),
    ("teacher/", ("build", "select")),  # select loads --teacher and --data as build does
    ("data/imagefolder.py", ("build",)),  # its flag hint is for --strict reads, which only build makes
    ("data/", ("build", "select")),
    ("", ("build",)),  # the stages, the pipeline, training, quantization: the build's
]
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)((?: [A-Z][\w.:]*)*)")
NAMED_COMMAND = re.compile(r"edgedistill ((?:board |targets )?[a-z]+)")


@dataclass(frozen=True)
class Suggestion:
    where: str  # file:line of the hint
    command: str
    flag: str
    values: int  # the metavars the hint writes after the flag (--input-shape C H W: 3)


def _hint_texts(tree: ast.AST):
    """(line, literal text) of every ``hint=`` keyword argument; an f-string's placeholders become
    ``{}`` so no metavar is read from them."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "hint":
            parts = []
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.JoinedStr):
                    parts.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in sub.values))
                elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and not _in_fstring(sub, node):
                    parts.append(sub.value)
            yield node.value.lineno, " ".join(parts)


def _in_fstring(const: ast.Constant, root: ast.AST) -> bool:
    return any(isinstance(n, ast.JoinedStr) and const in n.values for n in ast.walk(root))


def _suggestions() -> list[Suggestion]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        module_commands = next(cmds for prefix, cmds in COMMANDS_BY_MODULE if rel.startswith(prefix))
        for line, text in _hint_texts(ast.parse(path.read_text())):
            named = NAMED_COMMAND.search(text)
            commands = (named.group(1),) if named else module_commands
            for match in FLAG.finditer(text):
                values = len(match.group(2).split())
                out += [Suggestion(f"edgedistill/{rel}:{line}", c, match.group(1), values) for c in commands]
    return out


def _click_command(name: str):
    command = typer.main.get_command(app)
    for word in name.split():
        command = command.commands[word]
    return command


def _option(command, flag: str):
    for param in command.params:
        if flag in (*param.opts, *param.secondary_opts):
            return param
    return None


def test_the_hints_are_found():
    found = {(s.command, s.flag) for s in _suggestions()}
    # not a vacuous walk: hints of the build, select, bench and calibrate are all read
    assert {("build", "--min-compression"), ("build", "--max-latency-ms"), ("build", "--image-size"),
            ("select", "--input-shape"), ("bench", "--device"), ("calibrate", "--target")} <= found, found


@pytest.mark.parametrize("suggestion", _suggestions(), ids=lambda s: f"{s.where} {s.command} {s.flag}")
def test_a_hinted_flag_is_accepted_as_written(suggestion):
    param = _option(_click_command(suggestion.command), suggestion.flag)
    assert param is not None, f"{suggestion.where}: `edgedistill {suggestion.command}` has no {suggestion.flag}"
    if suggestion.values and not param.is_flag:
        assert suggestion.values == param.nargs, (
            f"{suggestion.where}: the hint writes {suggestion.flag} with {suggestion.values} values, but it takes "
            f"{param.nargs} per use" + (" (repeat the flag for each value)" if param.multiple else ""))
