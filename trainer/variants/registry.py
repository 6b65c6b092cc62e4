"""Variants register themselves by name; the CLI and tests look them up here, nowhere else."""

from __future__ import annotations

VARIANTS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        VARIANTS[name] = cls
        return cls

    return add
