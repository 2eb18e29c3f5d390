"""Verbs for building and validating interpreters."""

TASKS: list = []
