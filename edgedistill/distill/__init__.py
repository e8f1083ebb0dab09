"""Distillation: losses that make a small student imitate a teacher (logits, features, attention, relations)."""
