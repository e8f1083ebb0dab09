"""Export backends: one folder each (``tflite/``, ``onnx/``), registered by name.

Importing this package registers them, in the order their artifacts appear in the manifest.
"""

from edgedistill.backends.registry import (  # noqa: F401
    Backend,
    BackendChecks,
    ExportInputs,
    artifact_specs,
    backend,
    backend_for,
    backends,
    export_artifacts,
    load_model,
    main_artifact,
    register_backend,
)
from edgedistill.backends import tflite as _tflite  # noqa: E402,F401  (registers "tflite")
from edgedistill.backends import onnx as _onnx  # noqa: E402,F401  (registers "onnx")
