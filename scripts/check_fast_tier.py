"""The fast test tier: its wall time, and every package module it exercises.

    python scripts/check_fast_tier.py [--budget-s 300] [--json]

Runs ``pytest -m "not slow"`` under coverage and says, per module of ``edgedistill/``, whether a
line inside one of its functions ran (importing a module runs only its top level, which proves
little). Exits 1 when the tier took longer than ``--budget-s`` or left a module unexercised, naming
them. The README's figures for the fast tier are this script's output.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "edgedistill"


def function_body_lines(source: str) -> set[int]:
    """Line numbers of the statements inside every function (not their ``def`` lines)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def unexercised(executed: dict[str, set[int]]) -> list[str]:
    """Package modules with functions none of whose bodies ran (modules without functions count as
    exercised when imported)."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        body = function_body_lines(path.read_text())
        if not body:
            continue
        if not body & executed.get(str(path.resolve()), set()):
            missing.append(str(path.relative_to(REPO)))
    return missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # coverage adds about half: 207 s plain against 311 s under it, in one session here
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="the fast tier's time budget under coverage [default: 450, i.e. 5 minutes without it]")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    try:
        import coverage  # noqa: F401
    except ImportError:
        print("error: needs coverage (pip install -e '.[test]' installs it)", file=sys.stderr)
        return 2
    from edgedistill.streams import stdout_to_stderr

    with stdout_to_stderr(args.json), tempfile.TemporaryDirectory() as tmp:
        # The CLI tests run edgedistill in processes of their own: coverage follows them (patch =
        # subprocess), each writing its own data file, combined afterwards.
        rc = Path(tmp) / "coveragerc"
        rc.write_text(f"[run]\nsource = {PACKAGE}\nparallel = true\npatch = subprocess\n"
                      f"data_file = {Path(tmp) / '.coverage'}\n")
        env = {**os.environ, "COVERAGE_RCFILE": str(rc)}
        start = time.perf_counter()
        tests = subprocess.run([sys.executable, "-m", "coverage", "run", "-m", "pytest", "-m", "not slow", "-q",
                                "-p", "no:cacheprovider"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - start
        report = Path(tmp) / "coverage.json"
        for step in (["combine", "-q"], ["json", "-q", "-o", str(report)]):
            subprocess.run([sys.executable, "-m", "coverage", *step], cwd=REPO, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        files = json.loads(report.read_text())["files"]
    executed = {str((REPO / name).resolve()): set(info["executed_lines"]) for name, info in files.items()}
    missing = unexercised(executed)
    summary_line = next((l for l in reversed(tests.stdout.splitlines()) if " passed" in l or " failed" in l), "")
    result = {"wall_s": round(wall, 1), "budget_s": args.budget_s, "pytest_exit_code": tests.returncode,
              "pytest_summary": summary_line.strip("= "), "modules": len(list(PACKAGE.rglob("*.py"))),
              "unexercised": missing}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"fast tier: {result['pytest_summary']} in {wall:.0f} s (budget {args.budget_s:.0f} s, "
              f"under coverage, which slows it)")
        print(f"modules exercised: {result['modules'] - len(missing)} of {result['modules']}")
        for name in missing:
            print(f"  not exercised: {name}")
    if tests.returncode != 0:
        print(tests.stdout[-3000:], file=sys.stderr)
    return 0 if tests.returncode == 0 and not missing and wall <= args.budget_s else 1


if __name__ == "__main__":
    sys.exit(main())
