"""edgedistill: distil a teacher into a small student and ship it to an edge device."""

__version__ = "0.1.0"
