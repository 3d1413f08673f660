"""Issue 9's acceptance, end to end under a real systemd: a known mix of sessions goes through
mmd (socket-activated, as user milter-manager) to scripted python3-milter children, then the
shipped milter-manager-report.service (hardened, as user milter-manager with the journal
group) counts the journal into RRD databases and a Prometheus file, which must match the mix
exactly.

The children are libmilter processes (tests/support/children/scripted_milter.py) started as
transient units. Which child does what is keyed on the envelope, with the script's "match" feature:

- ``report-reject``, ``report-tempfail``, ``report-discard`` reject, tempfail, discard at
  envelope-recipient when the recipient contains ``reject@``, ``tempfail@``, ``discard@``, and
  accept at end-of-message otherwise;
- ``report-spam``, ``report-virus``, ``report-dkim``, ``report-quarantine`` add
  ``X-Spam-Flag: YES``, ``X-Virus-Status: Infected``, a ``DKIM-Signature`` or quarantine the
  message at end-of-message, unless the sender contains ``skip-<kind>``: then they accept at
  envelope-from (a whitelisted sender), so every child's verdict is "accept" in either case;
- ``report-missing`` is configured but nothing listens on its socket: one milter-error per
  session, and its fallback status (accept) as its verdict.

The report only reads entries since the test started (``--since=@T`` in a runtime drop-in,
with a fresh state directory), so sessions other system tests sent do not count.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.container import SystemdContainer
from tests.support.probes import journal_cursor, wait_for
from tests.support.scripted import CHILD as SCRIPTED_CHILD

pytestmark = pytest.mark.system

MTA_SOCKET = "unix:/run/milter-manager/milter-manager.sock"
SERVICE = "milter-manager.service"
SOCKET_UNIT = "milter-manager.socket"
REPORT_SERVICE = "milter-manager-report.service"
REPORT_UNIT_FILE = f"/usr/lib/systemd/system/{REPORT_SERVICE}"
REPORT_DROPIN = f"/run/systemd/system/{REPORT_SERVICE}.d/50-test.conf"
CONFIG = "/etc/milter-manager/milter-manager.toml"
STATE = "/var/lib/milter-manager/report"
SAVED_STATE = "/var/lib/milter-manager/report.saved-by-test"
PROMETHEUS = f"{STATE}/milter-manager.prom"
HTML = f"{STATE}/html"
CHILD_DIR = "/run/mmd-test-report"
STEP = 60

HEADER_CHILDREN: dict[str, dict[str, Any]] = {
    "spam": {"add_header": [["X-Spam-Flag", "YES"]]},
    "virus": {"add_header": [["X-Virus-Status", "Infected (Eicar-Test-Signature)"]]},
    "dkim": {"add_header": [["DKIM-Signature", "v=1; a=rsa-sha256; d=example.org; s=mmd; "
                                               "bh=abc; b=def"]]},
    "quarantine": {"quarantine": "held by the report test"},
}
GATE_VERDICTS = {"reject": "reject", "tempfail": "tempfail", "discard": "discard"}
# configured, but nothing listens: every session logs a milter-error and its fallback (accept)
MISSING = "report-missing"


def child_scripts() -> dict[str, dict[str, Any]]:
    """name -> scripted_milter.py script."""
    scripts: dict[str, dict[str, Any]] = {}
    for outcome, verdict in GATE_VERDICTS.items():
        scripts[f"report-{outcome}"] = {
            "name": f"report-{outcome}",
            "stages": {
                "envrcpt": {"match": f"{outcome}@", "verdict": verdict},
                "eom": {"verdict": "accept"},
            },
        }
    for kind, change in HEADER_CHILDREN.items():
        scripts[f"report-{kind}"] = {
            "name": f"report-{kind}",
            "stages": {
                "envfrom": {"match": f"skip-{kind}", "verdict": "accept"},
                "eom": {**change, "verdict": "accept"},
            },
        }
    return scripts


# --------------------------------------------------------------------------- the mix


@dataclass(frozen=True)
class Session:
    outcome: str  # accept, reject, tempfail, discard, quarantine
    kinds: frozenset[str] = frozenset()  # spam, virus, dkim: headers the children add

    @property
    def sender(self) -> str:
        wanted = set(self.kinds) | ({"quarantine"} if self.outcome == "quarantine" else set())
        skipped = [f"skip-{kind}" for kind in HEADER_CHILDREN if kind not in wanted]
        return (".".join(skipped) or "sender") + "@example.com"

    @property
    def recipient(self) -> str:
        return f"{self.outcome}@example.org"

    @property
    def status(self) -> str:
        """The final status mmd must log (and the report count)."""
        return {"tempfail": "temporary-failure"}.get(self.outcome, self.outcome)

    @property
    def answer(self) -> tuple[str, str | None]:
        """What the MTA side must be told: a quarantined message is accepted, with a reason."""
        if self.outcome == "quarantine":
            return "accept", f"<{HEADER_CHILDREN['quarantine']['quarantine']}>"
        return self.status, None

    def verdicts(self) -> dict[str, str]:
        """Each child's logged verdict."""
        found = {name: "accept" for name in [*child_scripts(), MISSING]}
        if self.outcome in GATE_VERDICTS:
            # the message ends at envelope-recipient: the other envelope children said
            # nothing but continue ("pass"); the header children accepted at envelope-from
            for outcome in GATE_VERDICTS:
                found[f"report-{outcome}"] = "pass"
            found[f"report-{self.outcome}"] = self.status
        return found

    def headers(self) -> list[str]:
        """Headers the children add (only messages that reach end-of-message)."""
        if self.outcome not in ("accept", "quarantine"):
            return []
        return [HEADER_CHILDREN[kind]["add_header"][0][0] for kind in sorted(self.kinds)]


def _mix() -> list[Session]:
    spam, virus, dkim = "spam", "virus", "dkim"
    plan: list[tuple[int, str, tuple[str, ...]]] = [
        (3, "accept", ()),
        (2, "accept", (spam,)),
        (1, "accept", (spam, dkim)),
        (2, "accept", (virus,)),
        (1, "accept", (virus, spam)),
        (2, "accept", (dkim,)),
        (3, "reject", ()),
        (2, "tempfail", ()),
        (2, "discard", ()),
        (1, "quarantine", ()),
        (1, "quarantine", (spam, dkim)),
    ]
    sessions = [Session(outcome, frozenset(kinds))
                for count, outcome, kinds in plan for _ in range(count)]
    # interleaved, so buckets and children see every kind mixed
    return sessions[::2] + sessions[1::2]


MIX = _mix()


@dataclass
class Expected:
    statuses: Counter[str]
    verdicts: dict[str, Counter[str]]
    reports: Counter[str]
    sessions: int
    entries: int
    errors: dict[str, int]


def expected(mix: list[Session]) -> Expected:
    statuses: Counter[str] = Counter(s.status for s in mix)
    verdicts: dict[str, Counter[str]] = {name: Counter() for name in [*child_scripts(), MISSING]}
    reports: Counter[str] = Counter()
    headers = 0
    for s in mix:
        for name, status in s.verdicts().items():
            verdicts[name][status] += 1
        added = s.headers()
        headers += len(added)
        for name in added:
            kind = {"X-Spam-Flag": "spam", "X-Virus-Status": "virus",
                    "DKIM-Signature": "dkim_signed"}[name]
            reports[kind] += 1
    # session-end + one milter-verdict per child + the missing child's milter-error + one
    # header-add per added header
    entries = len(mix) * (1 + len(verdicts) + 1) + headers
    return Expected(statuses, verdicts, reports, len(mix), entries, {MISSING: len(mix)})


# --------------------------------------------------------------------------- helpers


def is_active(c: SystemdContainer, unit: str) -> bool:
    return c.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0


def detected_milters(c: SystemdContainer) -> list[str]:
    """Names of the children mmd would use without a configuration file (detection)."""
    shown = c.run(["/usr/sbin/milter-manager", "--show-config", "--config-dir",
                   "/var/empty-mmd-config"]).stdout
    return [milter["name"] for milter in tomllib.loads(shown).get("milter", [])]


def configuration(detected: list[str]) -> str:
    lines = ["# written by tests/system/test_report_container.py", ""]
    for name in detected:
        lines += ["[[milter]]", f"name = {json.dumps(name)}", "enabled = false", ""]
    for name in [*child_scripts(), MISSING]:
        lines += ["[[milter]]", f"name = {json.dumps(name)}",
                  f'connection_spec = "unix:{CHILD_DIR}/{name}.sock"', ""]
    return "\n".join(lines)


def send(c: SystemdContainer, session: Session) -> tuple[str, str | None]:
    """What the MTA side was told: the reply's status and the quarantine reason, if any."""
    result = c.run(["/usr/bin/milter-test-server", "-s", MTA_SOCKET,
                    "-f", session.sender, "-r", session.recipient], timeout=60)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("status: "), result.stdout
    reasons = [line for line in lines if line.startswith("Quarantine reason: ")]
    return (lines[0].removeprefix("status: ").split()[0],
            reasons[0].removeprefix("Quarantine reason: ") if reasons else None)


def socket_exists(c: SystemdContainer, path: str) -> bool:
    return c.run(["test", "-S", path], check=False).returncode == 0


def run_report(c: SystemdContainer) -> str:
    """Start the shipped unit (oneshot: returns when the run is over); its summary line."""
    c.run(["systemctl", "reset-failed", REPORT_SERVICE], check=False)
    cursor = journal_cursor(c)
    started = c.run(["systemctl", "start", REPORT_SERVICE], check=False, timeout=300)

    def log() -> list[str]:
        """The unit's own lines since the start (journalctl 252 ignores --after-cursor
        together with matches, so they are filtered here)."""
        c.run(["journalctl", "--sync"])
        output = c.run(["journalctl", f"--after-cursor={cursor}", "-o", "json", "--all",
                        "--no-pager"]).stdout
        entries = [json.loads(line) for line in output.splitlines() if line.strip()]
        return [str(entry.get("MESSAGE")) for entry in entries
                if entry.get("_SYSTEMD_UNIT") == REPORT_SERVICE
                or entry.get("UNIT") == REPORT_SERVICE]

    result = c.run(["systemctl", "show", "-p", "Result", "--value", REPORT_SERVICE]).stdout
    assert started.returncode == 0 and result.strip() == "success", (
        f"{REPORT_SERVICE} failed: {result}\n{started.stderr}\n" + "\n".join(log())
    )
    # its stdout reaches the journal through a stream: it may lag behind the unit's end
    wait_for(lambda: any(line.startswith("read ") for line in log()),
             f"the summary line of {REPORT_SERVICE}", timeout=10)
    lines = [line for line in log() if line.startswith("read ")]
    assert len(lines) == 1, log()
    return lines[0]


def rrd_totals(c: SystemdContainer, path: str, start: int, end: int) -> dict[str, float]:
    """Per data source: the sum of rate x step over every known 1-minute point
    (``rrdtool fetch`` text, parsed here, not by mmd)."""
    output = c.run(["rrdtool", "fetch", path, "AVERAGE", "-r", str(STEP),
                    "-s", str(start), "-e", str(end)]).stdout
    lines = [line for line in output.splitlines() if line.strip()]
    names = lines[0].split()
    totals = dict.fromkeys(names, 0.0)
    for line in lines[1:]:
        _, _, values = line.partition(":")
        for name, text in zip(names, values.split(), strict=True):
            value = float(text)
            if value == value:  # not NaN (unknown)
                totals[name] += value * STEP
    return totals


def exact(value: float) -> int:
    """An integer count from fetched rates; `rrdtool fetch` prints 11 significant digits."""
    assert abs(value - round(value)) < max(1e-6, abs(value) * 1e-9), value
    return round(value)


def parse_prometheus(text: str) -> dict[str, str]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = value
    return samples


def journal_entries(c: SystemdContainer, since: int, *events: str) -> list[dict[str, Any]]:
    """mmd's journal entries since ``since`` (Unix seconds) with one of these MMD_EVENTs."""
    output = c.run(["journalctl", f"--since=@{since}", "-o", "json", "--no-pager",
                    "SYSLOG_IDENTIFIER=milter-manager"]).stdout
    found = []
    for line in output.splitlines():
        entry = json.loads(line)
        if entry.get("MMD_EVENT") in events:
            found.append(entry)
    return found


def journal_elapsed(c: SystemdContainer, since: int) -> dict[str, int]:
    """Microseconds per session-end / per child from the journal itself (real timings)."""
    elapsed: Counter[str] = Counter()
    for entry in journal_entries(c, since, "session-end", "milter-verdict"):
        event = entry["MMD_EVENT"]
        seconds, _, fraction = entry["MMD_ELAPSED"].partition(".")
        micro = int(seconds) * 1_000_000 + int((fraction + "000000")[:6])
        elapsed["session" if event == "session-end" else entry["MMD_MILTER"]] += micro
    return dict(elapsed)


# --------------------------------------------------------------------------- fixture


@pytest.fixture(scope="module")
def mix_setup(installed_mmd: SystemdContainer) -> Iterator[SystemdContainer]:
    c = installed_mmd
    for tool in ("/usr/bin/milter-test-server", "/usr/sbin/milter-manager", "/usr/bin/rrdtool",
                 "/usr/bin/journalctl", REPORT_UNIT_FILE):
        c.run(["test", "-x" if "/bin/" in tool else "-e", tool])
    c.run(["/usr/bin/python3", "-c", "import Milter"])  # python3-milter for the children

    had_config = c.run(["test", "-e", CONFIG], check=False).returncode == 0
    old_config = c.read_file(CONFIG) if had_config else None
    was_active = {unit: is_active(c, unit) for unit in (SOCKET_UNIT, SERVICE)}
    had_state = c.run(["test", "-e", STATE], check=False).returncode == 0
    children = [f"mmd-test-report-{name}" for name in child_scripts()]
    try:
        # the children, as transient units, sockets reachable by user milter-manager
        c.run(["mkdir", "-p", CHILD_DIR])
        c.run(["chmod", "0777", CHILD_DIR])
        c.write_file(f"{CHILD_DIR}/scripted_milter.py", SCRIPTED_CHILD.read_text(), mode=0o755)
        for (name, script), unit in zip(child_scripts().items(), children, strict=True):
            c.write_file(f"{CHILD_DIR}/{name}.json", json.dumps(script))
            c.run(["systemd-run", f"--unit={unit}", "--collect", "--quiet",
                   "/usr/bin/python3", f"{CHILD_DIR}/scripted_milter.py",
                   "--socket", f"unix:{CHILD_DIR}/{name}.sock",
                   "--record", f"{CHILD_DIR}/{name}.jsonl",
                   "--script", f"@{CHILD_DIR}/{name}.json"])
        for name in child_scripts():
            sock = f"{CHILD_DIR}/{name}.sock"
            wait_for(functools.partial(socket_exists, c, sock), f"the child socket {sock}")

        # mmd with exactly these children (detected milters turned off), started afresh
        c.write_file(CONFIG, configuration(detected_milters(c)))
        effective = tomllib.loads(c.run(["/usr/sbin/milter-manager", "--show-config"]).stdout)
        enabled = [m["name"] for m in effective.get("milter", []) if m.get("enabled", True)]
        assert enabled == [*child_scripts(), MISSING], (
            f"other configuration (a drop-in in /etc/milter-manager/milter-manager.d?) "
            f"changes the children: {enabled}"
        )
        c.run(["systemctl", "stop", SERVICE])
        c.run(["systemctl", "reset-failed", SERVICE], check=False)
        c.run(["systemctl", "start", SOCKET_UNIT])

        # a fresh report state; the shipped ExecStart plus a Prometheus file and --since
        if had_state:
            c.run(["rm", "-rf", SAVED_STATE])
            c.run(["mv", STATE, SAVED_STATE])
        yield c
    finally:
        c.run(["rm", "-f", REPORT_DROPIN], check=False)
        c.run(["systemctl", "daemon-reload"], check=False)
        c.run(["systemctl", "reset-failed", REPORT_SERVICE], check=False)
        c.run(["rm", "-rf", STATE], check=False)
        if had_state:
            c.run(["mv", SAVED_STATE, STATE], check=False)
        if old_config is not None:
            c.write_file(CONFIG, old_config)
        else:
            c.run(["rm", "-f", CONFIG], check=False)
        c.run(["systemctl", "stop", SERVICE], check=False)
        c.run(["systemctl", "reset-failed", SERVICE], check=False)
        if was_active[SOCKET_UNIT]:
            c.run(["systemctl", "start", SOCKET_UNIT], check=False)
        else:
            c.run(["systemctl", "stop", SOCKET_UNIT], check=False)
        if was_active[SERVICE]:
            c.run(["systemctl", "start", SERVICE], check=False)
        for unit in children:
            c.run(["systemctl", "stop", f"{unit}.service"], check=False)
        c.run(["rm", "-rf", CHILD_DIR], check=False)


def install_report_dropin(c: SystemdContainer, since: int) -> None:
    """The shipped ExecStart= line, plus what the test needs (a runtime drop-in)."""
    shipped = [line.removeprefix("ExecStart=") for line in c.read_file(REPORT_UNIT_FILE)
               .splitlines() if line.startswith("ExecStart=")]
    assert len(shipped) == 1, shipped
    command = f"{shipped[0]} --prometheus-file={PROMETHEUS} --since=@{since}"
    c.write_file(REPORT_DROPIN, f"[Service]\nExecStart=\nExecStart={command}\n")
    c.run(["systemctl", "daemon-reload"])


# --------------------------------------------------------------------------- the test


def test_report_counts_the_mix_exactly(mix_setup: SystemdContainer) -> None:
    c = mix_setup
    want = expected(MIX)
    # only what this test sends: the report starts at the first whole second after now
    since = int(time.time()) + 1
    time.sleep(since - time.time())
    install_report_dropin(c, since)

    answered = [send(c, session) for session in MIX]
    assert answered == [session.answer for session in MIX]
    assert is_active(c, SERVICE), "the MTA side's first connection should have started mmd"
    owner = c.run(["systemctl", "show", "-p", "User", "--value", SERVICE]).stdout.strip()
    assert owner == "milter-manager"
    # mmd logs a session's end after answering the MTA side: wait until the journal has all
    wait_for(lambda: len(journal_entries(c, since, "session-end")) == len(MIX),
             "every session-end entry in the journal")
    last_entry = time.time()

    # first run, right away: every entry is read; the Prometheus counters are complete
    summary = run_report(c)
    counts = " ".join(f"{status}={n}" for status, n in sorted(want.statuses.items()))
    assert summary.startswith(f"read {want.entries} entries, {want.sessions} sessions "
                              f"({counts}), "), summary
    elapsed = journal_elapsed(c, since)
    check_prometheus(c, want, elapsed)

    # once the minute of the last entry is over, the databases hold all of it; this run
    # reads nothing new and the counters stay as they were
    complete = (int(last_entry) // STEP + 1) * STEP + 1
    time.sleep(max(0.0, complete - time.time()))
    summary = run_report(c)
    assert summary.startswith("read 0 entries, 0 sessions, "), summary
    check_prometheus(c, want, elapsed)
    end = int(time.time()) + 2 * STEP
    databases = check_databases(c, want, elapsed, since - 2 * STEP, end)
    check_html(c)

    # and a third run adds nothing to the databases either
    summary = run_report(c)
    assert summary.startswith("read 0 entries, 0 sessions, "), summary
    assert check_databases(c, want, elapsed, since - 2 * STEP, end) == databases
    check_prometheus(c, want, elapsed)


def check_prometheus(c: SystemdContainer, want: Expected, elapsed: dict[str, int]) -> None:
    text = c.read_file(PROMETHEUS)
    samples = parse_prometheus(text)
    stamp = samples.pop("mmd_report_last_run_timestamp_seconds")
    assert abs(float(stamp) - time.time()) < 120, stamp
    expect: dict[str, str] = {}
    for status in ("pass", "accept", "reject", "discard", "temporary-failure", "quarantine",
                   "abort"):
        expect[f'mmd_sessions_total{{status="{status}"}}'] = str(want.statuses[status])
    expect["mmd_session_elapsed_seconds_sum"] = f"{elapsed['session'] / 1e6:.6f}"
    expect["mmd_session_elapsed_seconds_count"] = str(want.sessions)
    expect["mmd_sessions_disconnected_total"] = "0"
    for name, verdicts in want.verdicts.items():
        for status, count in verdicts.items():
            expect[f'mmd_milter_verdicts_total{{milter="{name}",status="{status}"}}'] = str(count)
        expect[f'mmd_milter_elapsed_seconds_sum{{milter="{name}"}}'] = \
            f"{elapsed[name] / 1e6:.6f}"
        expect[f'mmd_milter_elapsed_seconds_count{{milter="{name}"}}'] = str(want.sessions)
        expect[f'mmd_milter_errors_total{{milter="{name}"}}'] = str(want.errors.get(name, 0))
    for kind in ("spam", "ham", "virus", "greylist", "spf_pass", "spf_fail", "spf_softfail",
                 "spf_neutral", "spf_none", "spf_temperror", "spf_permerror", "dkim_signed",
                 "dkim_pass", "dkim_fail", "dkim_other"):
        expect[f'mmd_reports_total{{kind="{kind}"}}'] = str(want.reports[kind])
    expect["mmd_report_journal_entries_total"] = str(want.entries)
    assert samples == expect
    for family in ("mmd_sessions_total counter", "mmd_milter_verdicts_total counter",
                   "mmd_reports_total counter"):
        assert f"# TYPE {family}\n" in text


def check_databases(
    c: SystemdContainer, want: Expected, elapsed: dict[str, int], start: int, end: int
) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    sessions = rrd_totals(c, f"{STATE}/rrd/sessions.rrd", start, end)
    found["sessions"] = {name: exact(value) for name, value in sessions.items()}
    assert found["sessions"] == {
        "sessions": want.sessions,
        "elapsed_us": elapsed["session"],
        "disconnected": 0,
        **{status.replace("-", "_"): want.statuses[status]
           for status in ("pass", "accept", "reject", "discard", "temporary-failure",
                          "quarantine", "abort")},
        "other": 0,
    }
    reports = rrd_totals(c, f"{STATE}/rrd/reports.rrd", start, end)
    found["reports"] = {name: exact(value) for name, value in reports.items()}
    assert found["reports"] == {name: want.reports[name] for name in found["reports"]}
    assert set(found["reports"]) >= {"spam", "virus", "dkim_signed", "ham"}
    for name, verdicts in want.verdicts.items():
        data = rrd_totals(c, f"{STATE}/rrd/milter-{name}.rrd", start, end)
        found[name] = {source: exact(value) for source, value in data.items()}
        assert found[name] == {
            "verdicts": want.sessions,
            "elapsed_us": elapsed[name],
            "errors": want.errors.get(name, 0),
            **{status.replace("-", "_"): verdicts[status]
               for status in ("pass", "accept", "reject", "discard", "temporary-failure",
                              "skip")},
            "other": 0,
        }, name
    listed = c.run(["ls", f"{STATE}/rrd"]).stdout.split()
    assert sorted(listed) == sorted(
        ["sessions.rrd", "reports.rrd", *(f"milter-{name}.rrd" for name in want.verdicts)]
    )
    owners = c.run(["stat", "-c", "%U", *(f"{STATE}/rrd/{name}" for name in listed)]).stdout
    assert set(owners.split()) == {"milter-manager"}
    return found


def check_html(c: SystemdContainer) -> None:
    html = c.read_file(f"{HTML}/index.html")
    images = re.findall(r'<img src="([^"]+)"', html)
    # sessions, statuses, ... for 4 periods, and one graph page per child
    assert len(images) >= 4 * (2 + len(child_scripts()) + 1), images
    for name in [*child_scripts(), MISSING]:
        assert f"Child {name}:" in html
    listed = set(c.run(["ls", HTML]).stdout.split())
    assert set(images) <= listed, set(images) - listed
    quoted = " ".join(shlex.quote(f"{HTML}/{image}") for image in images)
    magic = c.run(f"for f in {quoted}; do head -c 8 \"$f\" | od -An -tx1 | tr -d ' \\n'; "
                  "echo; done").stdout.split()
    assert magic == ["89504e470d0a1a0a"] * len(images)
