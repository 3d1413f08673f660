"""Errors raised while building conditions from configuration.

Evaluation never raises: a condition that cannot decide answers with a
``Decision`` whose reason says why. Only configuration is rejected, and the
error names the TOML key (or ``FILE:LINE``) so an operator can fix it.
"""

from __future__ import annotations


class ConditionConfigError(ValueError):
    """A bad value in the ``[conditions]`` table or in a list file."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}")
        self.key_path = key_path
        self.message = message


class UnknownConditionError(ConditionConfigError):
    """A milter names a condition nobody defined."""

    def __init__(
        self, name: str, known: list[str], key_path: str = "applicable_conditions"
    ) -> None:
        super().__init__(
            key_path,
            f"unknown applicable condition {name!r} (known: {', '.join(known)})",
        )
        self.name = name
        self.known = tuple(known)
