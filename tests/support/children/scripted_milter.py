#!/usr/bin/python3
"""A child milter for tests whose every answer comes from a JSON script.

It runs on libmilter through python3-milter, so tests meet a real libmilter
peer (negotiation, step flags, macro handling) rather than our own codec.
It must run under Debian's /usr/bin/python3 (where the binding lives).

Usage: scripted_milter.py --socket unix:PATH --record EVENTS.jsonl --script JSON

Script (every key optional)::

    {
      "name": "scripted",
      "steps": ["NOHELO", "NOEOH"],          # step flags asked for (P_NO*, SKIP, ...)
      "actions": ["ADDHDRS", ...],           # default: what the stages below need
      "macros": ["{trusted_domain}"],        # macro names to record, besides the usual
      "symlists": {"connect": "j {daemon_name}"},
      "stages": {
        "envrcpt": {"verdict": "reject", "reply": ["550", "5.7.1", "go away"],
                    "match": "bad@"},        # only when an argument contains "bad@"
        "eom": {"add_header": [["X-Test", "yes"]], "insert_header": [[0, "X-A", "1"]],
                "change_header": [["Subject", 1, "new"]], "delete_header": [["X-Old", 1]],
                "replace_body": "text", "add_rcpt": ["<a@b>"], "del_rcpt": ["<c@d>"],
                "chgfrom": "<e@f>", "quarantine": "why", "progress": 1,
                "sleep": 0.5, "exit": false, "crash": false}
      }
    }

Stages: connect helo envfrom envrcpt data header eoh body eom abort close.
Verdicts: continue accept reject tempfail discard skip.
Each callback appends one JSON line to the record file:
``{"pid": N, "event": STAGE, "args": [...], "macros": {NAME: VALUE}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import Milter

CONTINUE: int = Milter.CONTINUE
STAGES = ("connect", "helo", "envfrom", "envrcpt", "data", "header", "eoh", "body", "eom")
VERDICTS: dict[str, int] = {
    "continue": Milter.CONTINUE,
    "accept": Milter.ACCEPT,
    "reject": Milter.REJECT,
    "tempfail": Milter.TEMPFAIL,
    "discard": Milter.DISCARD,
    "skip": Milter.SKIP,
}
STEP_FLAGS = {
    "NOCONNECT": Milter.P_NOCONNECT,
    "NOHELO": Milter.P_NOHELO,
    "NOMAIL": Milter.P_NOMAIL,
    "NORCPT": Milter.P_NORCPT,
    "NOBODY": Milter.P_NOBODY,
    "NOHDRS": Milter.P_NOHDRS,
    "NOEOH": Milter.P_NOEOH,
    "NOUNKNOWN": Milter.P_NOUNKNOWN,
    "NODATA": Milter.P_NODATA,
    "SKIP": Milter.P_SKIP,
    "RCPT_REJ": Milter.P_RCPT_REJ,
    "HDR_LEADSPC": Milter.P_HDR_LEADSPC,
}
ACTION_FLAGS = {
    "ADDHDRS": Milter.ADDHDRS,
    "CHGBODY": Milter.CHGBODY,
    "ADDRCPT": Milter.ADDRCPT,
    "ADDRCPT_PAR": Milter.ADDRCPT_PAR,
    "DELRCPT": Milter.DELRCPT,
    "CHGHDRS": Milter.CHGHDRS,
    "QUARANTINE": Milter.QUARANTINE,
    "CHGFROM": Milter.CHGFROM,
    "SETSYMLIST": Milter.SETSYMLIST,
}
# what each change needs from the MTA
CHANGE_ACTIONS = {
    "add_header": "ADDHDRS",
    "insert_header": "ADDHDRS",
    "change_header": "CHGHDRS",
    "delete_header": "CHGHDRS",
    "replace_body": "CHGBODY",
    "add_rcpt": "ADDRCPT",
    "del_rcpt": "DELRCPT",
    "chgfrom": "CHGFROM",
    "quarantine": "QUARANTINE",
}
SYMLIST_STAGES = {
    "connect": Milter.M_CONNECT,
    "helo": Milter.M_HELO,
    "envfrom": Milter.M_ENVFROM,
    "envrcpt": Milter.M_ENVRCPT,
    "data": Milter.M_DATA,
    "eom": Milter.M_EOM,
    "eoh": Milter.M_EOH,
}
RECORDED_MACROS = (
    "i", "j", "_", "v", "{daemon_name}", "{daemon_addr}", "{if_name}", "{if_addr}",
    "{client_addr}", "{client_name}", "{client_ptr}", "{client_port}", "{auth_type}",
    "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}",
    "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}", "{trusted_domain}", "{stress}",
    "{tls_version}", "{cipher}",
)

SCRIPT: dict[str, Any] = {}
RECORD_PATH = ""
_record_lock = threading.Lock()


def needed_actions(script: dict[str, Any]) -> int:
    names = set(script.get("actions") or [])
    if "actions" not in script:
        for stage in script.get("stages", {}).values():
            names.update(CHANGE_ACTIONS[key] for key in stage if key in CHANGE_ACTIONS)
        if script.get("symlists"):
            names.add("SETSYMLIST")
    flags = 0
    for name in names:
        flags |= ACTION_FLAGS[name]
    return flags


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, tuple | list):
        return [_text(item) for item in value]
    return value


class ScriptedMilter(Milter.Base):  # type: ignore[misc]
    """One SMTP connection; answers what the script says for each stage."""

    def negotiate(self, opts: list[int]) -> int:
        offered = opts[1]
        result: int = super().negotiate(opts)
        wanted = 0
        for name in SCRIPT.get("steps", []):
            wanted |= STEP_FLAGS[name]
        # super() keeps only what it wants from the offer; add ours where offered
        opts[1] = self._protocol = opts[1] | (wanted & offered)
        self._record("negotiate", [offered, opts[0], opts[1]])
        for stage, names in SCRIPT.get("symlists", {}).items():
            self.setsymlist(SYMLIST_STAGES[stage], names)
        return result

    # -------------------------------------------------------- events

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return self._answer("connect", [hostname, family, hostaddr])

    def hello(self, hostname: str) -> int:
        return self._answer("helo", [hostname])

    def envfrom(self, sender: str, *params: str) -> int:
        return self._answer("envfrom", [sender, *params])

    def envrcpt(self, recipient: str, *params: str) -> int:
        return self._answer("envrcpt", [recipient, *params])

    def data(self) -> int:
        return self._answer("data", [])

    def header(self, name: str, value: str) -> int:
        return self._answer("header", [name, value])

    def eoh(self) -> int:
        return self._answer("eoh", [])

    def body(self, chunk: bytes) -> int:
        return self._answer("body", [chunk])

    def eom(self) -> int:
        return self._answer("eom", [])

    def abort(self) -> int:
        self._record("abort", [])
        return CONTINUE

    def close(self) -> int:
        self._record("close", [])
        return CONTINUE

    # -------------------------------------------------------- script

    def _record(self, event: str, args: list[Any]) -> None:
        macros = {}
        if event not in ("negotiate", "close"):
            for name in (*RECORDED_MACROS, *SCRIPT.get("macros", [])):
                value = self.getsymval(name)
                if value is not None:
                    macros[name] = _text(value)
        line = json.dumps({"pid": os.getpid(), "event": event, "args": _text(args),
                           "macros": macros, "time": time.time()})
        with _record_lock, open(RECORD_PATH, "a", encoding="utf-8") as file:
            file.write(line + "\n")

    def _answer(self, stage: str, args: list[Any]) -> int:
        self._record(stage, args)
        behaviour: dict[str, Any] = SCRIPT.get("stages", {}).get(stage, {})
        match = behaviour.get("match")
        if match is not None and not any(match in str(_text(arg)) for arg in args):
            return CONTINUE
        if behaviour.get("crash"):
            os.kill(os.getpid(), signal.SIGKILL)
        if behaviour.get("exit"):
            os._exit(3)
        for _ in range(int(behaviour.get("progress", 0))):
            if stage == "eom":
                self.progress()
        if behaviour.get("sleep"):
            time.sleep(float(behaviour["sleep"]))
        if stage == "eom":
            self._change(behaviour)
        reply = behaviour.get("reply")
        if reply:
            self.setreply(*reply)
        return VERDICTS[behaviour.get("verdict", "continue")]

    def _change(self, behaviour: dict[str, Any]) -> None:
        for name, value in behaviour.get("add_header", []):
            self.addheader(name, value)
        for index, name, value in behaviour.get("insert_header", []):
            self.addheader(name, value, index)
        for name, index, value in behaviour.get("change_header", []):
            self.chgheader(name, index, value)
        for name, index in behaviour.get("delete_header", []):
            self.chgheader(name, index, "")
        if "replace_body" in behaviour:
            self.replacebody(behaviour["replace_body"].encode())
        for recipient in behaviour.get("add_rcpt", []):
            self.addrcpt(recipient)
        for recipient in behaviour.get("del_rcpt", []):
            self.delrcpt(recipient)
        if "chgfrom" in behaviour:
            self.chgfrom(behaviour["chgfrom"])
        if "quarantine" in behaviour:
            self.quarantine(behaviour["quarantine"])


def main(argv: list[str] | None = None) -> int:
    global SCRIPT, RECORD_PATH
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True, help="unix:PATH or inet:PORT@HOST")
    parser.add_argument("--record", required=True, help="JSON lines file of events")
    parser.add_argument("--script", default="{}", help="JSON text, or @FILE")
    args = parser.parse_args(argv)
    text = args.script
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as file:
            text = file.read()
    SCRIPT = json.loads(text)
    unknown = set(SCRIPT.get("stages", {})) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {sorted(unknown)}")
    RECORD_PATH = args.record
    Milter.factory = ScriptedMilter
    Milter.set_flags(needed_actions(SCRIPT))
    os.umask(0o000)  # the socket must be reachable by Postfix's user
    Milter.runmilter(SCRIPT.get("name", "scripted"), args.socket, 600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
