"""``edgedistill board up|down|status TARGET``: the emulated aarch64 board of a target."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

board_app = typer.Typer(help="An emulated aarch64 board (qemu-user, an arm64 Debian rootfs, sshd on 127.0.0.1) "
                             "for a target: rpi4, rpi5, android-arm64.", no_args_is_help=True, rich_markup_mode=None)

TargetArg = Annotated[str, typer.Argument(help="Target name: rpi4, rpi5 or android-arm64.")]


@board_app.command("up")
def board_up(
    target: TargetArg,
    tflite_runtime: Annotated[bool, typer.Option("--tflite-runtime", help="Also install tflite-runtime 2.14 on the board (its own venv).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the board's state as JSON.")] = False,
) -> None:
    """Create (once, then cached) and start the target's board; print its devices.toml entry."""
    import sys

    from edgedistill.board import server
    from edgedistill.hardware.targets import load_target

    t = load_target(target)
    started = time.perf_counter()
    from edgedistill.board.rootfs import DEFAULT_RUNTIMES

    runtimes = DEFAULT_RUNTIMES + (("tflite-runtime",) if tflite_runtime else ())
    st, image = server.up(t, log=lambda m: print(m, file=sys.stderr, flush=True), runtimes=runtimes)
    took = time.perf_counter() - started
    if json_out:
        print(json.dumps({"target": st.target, "spec": st.spec, "cpu": st.cpu, "port": st.port,
                          "ssh_config": st.ssh_config, "devices_file": str(server.devices_file()),
                          "runtimes": image.runtimes, "seconds": round(took, 1)}, indent=2))
        return
    print(f"board {st.target} is up: {st.spec} on 127.0.0.1:{st.port}, emulated {st.cpu}, "
          f"runtimes {', '.join(f'{k} {v}' for k, v in image.runtimes.items())} ({took:.0f} s)", file=sys.stderr)
    print(f"builds for {st.target} verify on it by themselves; other tools take this entry "
          f"(also in {server.devices_file()}):\n", file=sys.stderr)
    print(server.device_entry(st))


@board_app.command("down")
def board_down(target: TargetArg) -> None:
    """Stop the target's board (the rootfs stays cached)."""
    from edgedistill.board import server

    print(f"board {target}: " + ("stopped" if server.down(target) else "was not running"))


@board_app.command("status")
def board_status(target: TargetArg) -> None:
    """Whether the target's board is up, and its devices.toml entry. Exit 1 when it is not up."""
    from edgedistill.board import rootfs, server

    st = server.state(target)
    cached = "cached" if (rootfs.board_root() / "image.json").exists() else "not built yet"
    if st is None:
        print(f"board {target}: down (rootfs {cached} in {rootfs.board_root()})")
        raise typer.Exit(1)
    print(f"board {target}: up on 127.0.0.1:{st.port} since {st.started}, emulated {st.cpu}\n")
    print(server.device_entry(st))
