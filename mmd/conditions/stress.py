"""Stress Notify / No Stress: react when the MTA is close to its process limit.

Under load, expensive children (a spam scanner) can be dropped ("No Stress"),
and others can be told so (``{stress}=yes``, "Stress Notify"), e.g. to make
milter-greylist skip its tarpit. The threshold is the number of sessions in
progress from which the host counts as stressed; by default 75 % of the
number of smtpd processes Postfix may run, read from master.cf and main.cf
when the conditions are built (start, reload), never per session.
"""

from __future__ import annotations

from pathlib import Path

from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage

STRESS_MACRO = "{stress}"
STRESS_RATIO = 0.75
POSTFIX_DEFAULT_PROCESS_LIMIT = 100


def read_main_cf_process_limit(main_cf: str | Path) -> int:
    """``default_process_limit`` from main.cf; Postfix's default when absent or unusable.

    A value that is not a plain integer (e.g. ``$other``) is not expanded: the
    default is used, as Postfix itself would need ``postconf`` to tell.
    """
    try:
        text = Path(main_cf).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return POSTFIX_DEFAULT_PROCESS_LIMIT
    limit = POSTFIX_DEFAULT_PROCESS_LIMIT
    for key, value in _main_cf_assignments(text):
        if key == "default_process_limit":
            limit = int(value) if value.isdigit() else POSTFIX_DEFAULT_PROCESS_LIMIT
    return limit


def _main_cf_assignments(text: str) -> list[tuple[str, str]]:
    """``key = value`` pairs; a line starting with white space continues the previous one."""
    pairs: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if pairs:
                key, value = pairs[-1]
                pairs[-1] = (key, f"{value} {line.strip()}".strip())
            continue
        key, sep, value = line.partition("=")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def read_smtpd_process_limit(master_cf: str | Path, main_cf: str | Path) -> int | None:
    """How many smtpd processes Postfix may run at once, or None when unknown.

    Sums the process limit (7th column) of every master.cf service whose
    command is ``smtpd``: with postscreen the ``smtp inet`` service runs
    postscreen (limit 1) and the smtpd processes are the ``smtpd pass``
    service, and submission/smtps run their own smtpd; all of them reach the
    milters. ``-`` means main.cf's ``default_process_limit`` (Postfix default
    100). None when master.cf cannot be read, no smtpd service is enabled, or
    one of them is unlimited (``0``).
    """
    try:
        text = Path(master_cf).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    default_limit: int | None = None
    total = 0
    found = False
    for line in text.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith("#"):
            continue  # blank, continuation (-o ...) or comment
        fields = line.split()
        if len(fields) < 8 or fields[7] != "smtpd":
            continue
        maxproc = fields[6]
        if maxproc == "-":
            if default_limit is None:
                default_limit = read_main_cf_process_limit(main_cf)
            limit = default_limit
        elif maxproc.isdigit():
            limit = int(maxproc)
        else:
            continue
        if limit == 0:
            return None
        total += limit
        found = True
    return total if found else None


def derive_stress_threshold(process_limit: int | None, ratio: float = STRESS_RATIO) -> int:
    """Sessions in progress from which the host is stressed; 0 disables stress."""
    if not process_limit:
        return 0
    return int(process_limit * ratio)


def threshold_from_postfix(
    config_directory: str | Path = "/etc/postfix", ratio: float = STRESS_RATIO
) -> int:
    directory = Path(config_directory)
    return derive_stress_threshold(
        read_smtpd_process_limit(directory / "master.cf", directory / "main.cf"), ratio
    )


class _StressBase:
    __slots__ = ("name", "threshold")

    stages: frozenset[Stage] = frozenset({Stage.CONNECT})
    needed_macros: tuple[tuple[Stage, str], ...] = ()

    def __init__(self, *, threshold: int, name: str) -> None:
        self.name = name
        self.threshold = threshold

    def _stressed(self, facts: SessionFacts) -> bool:
        return 0 < self.threshold <= facts.active_sessions


class StressNotify(_StressBase):
    """Never stops the child; gives it ``{stress}=yes`` under stress."""

    __slots__ = ("_macros",)

    def __init__(self, *, threshold: int, name: str = "Stress Notify") -> None:
        super().__init__(threshold=threshold, name=name)
        self._macros = ((STRESS_MACRO, "yes"),)

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        if stage is not Stage.CONNECT or not self._stressed(facts):
            return None
        return Decision(
            True,
            macros=self._macros,
            reason=f"stress: {facts.active_sessions} sessions >= threshold {self.threshold}",
        )


class NoStress(_StressBase):
    """Stops the child for the connection under stress."""

    __slots__ = ()

    def __init__(self, *, threshold: int, name: str = "No Stress") -> None:
        super().__init__(threshold=threshold, name=name)

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        if stage is not Stage.CONNECT:
            return None
        if self._stressed(facts):
            return Decision(
                False,
                reason=f"stress: {facts.active_sessions} sessions >= threshold {self.threshold}",
            )
        if self.threshold <= 0:
            return Decision(True, reason="stress: no threshold, never stressed")
        return Decision(
            True,
            reason=f"stress: {facts.active_sessions} sessions < threshold {self.threshold}",
        )
