"""Applicable conditions: which children a session (or a message) gets.

Pure and synchronous: a condition sees ``SessionFacts`` and answers with a
``Decision`` (see ``mmd.engine.applicability``). Files (list files, Postfix's
master.cf) are read only when conditions are built, never per session.
"""

from mmd.conditions.errors import ConditionConfigError, UnknownConditionError
from mmd.conditions.registry import (
    BUILTIN_CONDITIONS,
    CONDITION_ALIASES,
    DEFAULT_CONDITIONS,
    ConditionRegistry,
    build_conditions,
    decision_stages,
    needed_macros,
)
from mmd.conditions.settings import ConditionSettings, settings_from_table

__all__ = [
    "BUILTIN_CONDITIONS",
    "CONDITION_ALIASES",
    "DEFAULT_CONDITIONS",
    "ConditionConfigError",
    "ConditionRegistry",
    "ConditionSettings",
    "UnknownConditionError",
    "build_conditions",
    "decision_stages",
    "needed_macros",
    "settings_from_table",
]
