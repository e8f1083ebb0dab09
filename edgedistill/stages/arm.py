"""Stage 7b, verify on ARM: the shipped model on an aarch64 board's kernels against this host's
(:mod:`edgedistill.verify.arm`). It runs when the target's emulated board is up (``edgedistill board
up TARGET``) or ``--arm-board`` names a board; a disagreement above the tolerance stops the build
(exit 3) before anything reaches the bundle."""

from __future__ import annotations

from edgedistill.backends import main_artifact
from edgedistill.backends.io import to_model_input
from edgedistill.stages.context import BuildContext
from edgedistill.verify.arm import ArmParity, check_on_board, require_passed
from edgedistill.verify.bundle import SAMPLE_IMAGES


def arm_device(ctx: BuildContext) -> tuple[str, str | None, str | None] | None:
    """(device, devices file, CPU label) of the board to verify on, or None: ``--arm-board off``,
    or no flag and no emulated board up for the target."""
    choice = (ctx.cfg.arm_board or "").strip()
    if choice == "off":
        return None
    if choice:
        return choice, None, None
    from edgedistill.board import server

    st = server.state(ctx.target.name)
    if st is None:
        return None
    return f"board-{st.target}", str(server.devices_file()), f"emulated {st.cpu.replace('cortex-a', 'Cortex-A')}"


def arm_stage(ctx: BuildContext, artifacts) -> ArmParity | None:
    where = arm_device(ctx)
    if where is None:
        return None
    device, devices_file, cpu = where
    main = next(a for a in artifacts if a.name == main_artifact().name)
    ctx.rep.stage("arm", f"{main.name} on {device}'s aarch64 kernels against this host's")
    from edgedistill.backends import load_model

    runtime_model = load_model(main.path)
    inputs = to_model_input(ctx.data.test.images[:SAMPLE_IMAGES], ctx.data.preprocessing, runtime_model.input_spec)
    parity = check_on_board(main.path, inputs, device, devices_file=devices_file, cpu=cpu,
                            tolerance_steps=ctx.cfg.arm_tolerance_steps)
    ctx.rep.note(parity.describe() + f" ({parity.runtime}, {parity.samples} images, {parity.seconds:.0f} s)")
    require_passed(parity)  # raises VerificationError (exit 3)
    return parity
