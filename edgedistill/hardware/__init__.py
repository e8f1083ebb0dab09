"""Hardware: what a target is, what a model costs on it, and how fast it runs there.

- ``targets``: one TOML file per target (CPU/ISA, runtime, budgets, device), checked strictly;
- ``cost``: a model's fused kernels traced at batch 1, as latency features and a memory estimate;
- ``latency_model``: a target's latency model (fitting, prediction, calibration files, and the
  nearest shipped target's model for a target without one);
- ``calibrate``: measure generated models on this host and fit a target's model, refit from
  measurements, derive a device's model from a published figure;
- ``cli``: the ``edgedistill calibrate`` command.

Nothing here knows how students are chosen (``edgedistill.select``) or trained.
"""
