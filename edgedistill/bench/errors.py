"""Errors of the bench stage beyond edgedistill.errors."""

from __future__ import annotations

from edgedistill.errors import DeviceError


class TransientDeviceError(DeviceError):
    """A failure that may pass on its own (connection refused, dropped, timed out): worth one retry."""
