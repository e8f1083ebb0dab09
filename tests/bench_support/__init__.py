"""Shared helpers for the bench tests (tiny models, the throwaway sshd)."""
