"""The configuration's status words as the engine's verdicts.

A generation of the daemon turns ``fallback_status`` and friends
(``mmd.config.model.Status``) into ``Verdict`` values for the engine. The map
lives on the daemon side so that the engine never imports the configuration.
"""

from __future__ import annotations

from mmd.config.model import Status
from mmd.engine.verdict import Verdict

STATUS_VERDICTS: dict[Status, Verdict] = {
    Status.ACCEPT: Verdict.ACCEPT,
    Status.TEMPORARY_FAILURE: Verdict.TEMPFAIL,
    Status.REJECT: Verdict.REJECT,
    Status.DISCARD: Verdict.DISCARD,
}
