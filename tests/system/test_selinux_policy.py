"""The SELinux module in selinux/ allows what milter-manager does and nothing it should not.

This machine has no SELinux kernel, so the module is checked the way an auditor would: build it
with the reference policy's devel Makefile, link it into a scratch copy of the installed policy
(never the live store), and query the resulting binary policy with sesearch, seinfo and
selabel_lookup. A missing tool fails the test: a silently skipped policy check is how a broken
module ships.

Queries are dumped once per source or target type and matched here, because each sesearch call
re-reads the 2 MB policy (~0.6 s).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "selinux"
MODULE = "milter_manager"
DEVEL_MAKEFILE = Path("/usr/share/selinux/devel/Makefile")
INSTALLED_STORE = Path("/var/lib/selinux/default")
INSTALLED_CONFIG = Path("/etc/selinux/default")
SEMANAGE_CONF = Path("/etc/selinux/semanage.conf")
TOOLS = ("make", "m4", "checkmodule", "semodule_package", "semodule", "sesearch", "seinfo",
         "selabel_lookup")

# A second, test-only module that calls every interface of milter_manager.if on a type of its
# own, so the interfaces are compiled and linked, not just shipped.
INTERFACE_PROBE = """\
policy_module(mmiftest, 0.1.0)

gen_require(`
\trole system_r;
')

type mmiftest_t;
domain_type(mmiftest_t)
role system_r types mmiftest_t;

milter_manager_stream_connect(mmiftest_t)
milter_manager_read_config(mmiftest_t)
milter_manager_manage_config(mmiftest_t)
milter_manager_read_state(mmiftest_t)
milter_manager_dbus_chat(mmiftest_t)
milter_manager_admin(mmiftest_t, system_r)
"""

RULE = re.compile(
    r"^(?P<kind>allow|dontaudit) (?P<src>\S+) (?P<tgt>\S+):(?P<cls>\S+) "
    r"(?:\{ (?P<perms>[^}]*) \}|(?P<perm>\S+));"
    r"(?: \[ (?P<cond>.*) \]:(?P<branch>True|False))?$"
)
TYPE_LINE = re.compile(
    r"^type (?P<name>\S+?)(?: alias (?:\{[^}]*\}|\S+?))?(?:, (?P<attrs>.*))?;$"
)
COND_TOKEN = re.compile(r"\s*(&&|\|\||==|!=|!|\^|\(|\)|[A-Za-z0-9_]+)")
COND_OPERATORS = {"&&": " and ", "||": " or ", "!": " not ", "^": " != ", "==": " == ",
                  "!=": " != ", "(": "(", ")": ")"}


@dataclass(frozen=True)
class Rule:
    kind: str
    src: str
    tgt: str
    cls: str
    perms: frozenset[str]
    cond: str | None
    branch: bool


def run(args: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


def parse_rules(text: str) -> list[Rule]:
    rules = []
    for line in text.splitlines():
        match = RULE.match(line.strip())
        if match is None:
            continue
        perms = (match["perms"] or match["perm"]).split()
        rules.append(Rule(match["kind"], match["src"], match["tgt"], match["cls"],
                          frozenset(perms), match["cond"], match["branch"] != "False"))
    return rules


class Policy:
    """A linked binary policy, its file contexts, and cached query results."""

    def __init__(self, policy: Path, file_contexts: Path) -> None:
        self.policy = policy
        self.file_contexts = file_contexts

    def sesearch(self, *args: str) -> str:
        return run(["sesearch", *args, str(self.policy)])

    @functools.cached_property
    def attributes(self) -> dict[str, frozenset[str]]:
        """Type name -> its attributes, from one seinfo call."""
        table = {}
        for line in run(["seinfo", str(self.policy), "-t", "-x"]).splitlines():
            line = line.strip()
            match = TYPE_LINE.match(line)
            if match:
                attrs = match["attrs"].split(", ") if match["attrs"] else []
                table[match["name"]] = frozenset(attrs)
        return table

    @functools.cached_property
    def booleans(self) -> dict[str, bool]:
        table = {}
        for line in run(["seinfo", str(self.policy), "-b", "-x"]).splitlines():
            parts = line.strip().rstrip(";").split()
            if len(parts) == 3 and parts[0] == "bool":
                table[parts[1]] = parts[2] == "true"
        return table

    @functools.cache  # noqa: B019  (one Policy per test session)
    def rules(self, kind: str, side: str, type_name: str) -> tuple[Rule, ...]:
        """All allow or dontaudit rules with type_name (or one of its attributes) on one side."""
        flag = "-A" if kind == "allow" else "--dontaudit"
        return tuple(parse_rules(self.sesearch(flag, f"-{side}", type_name)))

    def matches(self, rule_type: str, type_name: str) -> bool:
        return rule_type == type_name or rule_type in self.attributes[type_name]

    def active_by_default(self, rule: Rule) -> bool:
        if rule.cond is None:
            return True
        expression = ""
        for token in COND_TOKEN.findall(rule.cond):
            if token in COND_OPERATORS:
                expression += COND_OPERATORS[token]
            else:
                expression += str(self.booleans[token])
        return bool(eval(expression, {"__builtins__": {}})) == rule.branch

    def granted(self, src: str, tgt: str, cls: str, kind: str = "allow",
                unconditional: bool = True) -> frozenset[str]:
        """Permissions src has on tgt:cls, through types and attributes."""
        perms: set[str] = set()
        for rule in self.rules(kind, "s", src):
            if rule.cls != cls or not self.matches(rule.tgt, tgt):
                continue
            if rule.cond is not None and unconditional:
                continue
            perms |= rule.perms
        return frozenset(perms)

    def granted_by_default(self, src: str, tgt: str, cls: str) -> frozenset[str]:
        """Permissions src has with every boolean at its default value."""
        perms: set[str] = set()
        for rule in self.rules("allow", "s", src):
            if rule.cls == cls and self.matches(rule.tgt, tgt) and self.active_by_default(rule):
                perms |= rule.perms
        return frozenset(perms)

    def granted_to(self, src: str, tgt: str, cls: str) -> frozenset[str]:
        """Like granted(), but dumps the rules by target (for sources with huge rule sets)."""
        perms: set[str] = set()
        for rule in self.rules("allow", "t", tgt):
            if rule.cls == cls and rule.cond is None and self.matches(rule.src, src):
                perms |= rule.perms
        return frozenset(perms)

    def label(self, path: str) -> str:
        out = run(["selabel_lookup", "-b", "file", "-f", str(self.file_contexts), "-k", path])
        context = out.strip().removeprefix("Default context:").strip()
        return context.split(":")[2]


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    missing += [str(p) for p in (DEVEL_MAKEFILE, INSTALLED_STORE, INSTALLED_CONFIG, SEMANAGE_CONF)
                if not p.exists()]
    if missing:
        pytest.fail("SELinux policy tools missing (install selinux-policy-dev "
                    "selinux-policy-default checkpolicy semodule-utils policycoreutils setools): "
                    + ", ".join(missing))


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    build = tmp_path_factory.mktemp("selinux-build")
    for suffix in (".te", ".if", ".fc"):
        shutil.copy(SOURCES / f"{MODULE}{suffix}", build)
    (build / "mmiftest.te").write_text(INTERFACE_PROBE)
    (build / "mmiftest.fc").write_text("")
    (build / "mmiftest.if").write_text("## <summary>Interface probe for tests.</summary>\n")
    run(["make", "-f", str(DEVEL_MAKEFILE), f"{MODULE}.pp", "mmiftest.pp"], cwd=build)
    return build


@pytest.fixture(scope="module")
def policy(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Policy:
    root = tmp_path_factory.mktemp("selinux-root")
    (root / "var/lib/selinux").mkdir(parents=True)
    (root / "etc/selinux").mkdir(parents=True)
    shutil.copytree(INSTALLED_STORE, root / "var/lib/selinux/default", symlinks=True)
    shutil.copytree(INSTALLED_CONFIG, root / "etc/selinux/default", symlinks=True)
    shutil.copy(SEMANAGE_CONF, root / "etc/selinux/semanage.conf")
    run(["semodule", "-p", str(root), "-s", "default", "-n",
         "-i", str(build_dir / f"{MODULE}.pp"), "-i", str(build_dir / "mmiftest.pp")])
    config = root / "etc/selinux/default"
    policies = sorted((config / "policy").glob("policy.*"))
    assert policies, "semodule wrote no binary policy"
    return Policy(policies[-1], config / "contexts/files/file_contexts")


# --- the module builds and loads -------------------------------------------------------------


def test_module_is_linked_into_the_scratch_policy(policy: Policy) -> None:
    assert "milter_domains" in policy.attributes["milter_manager_t"]
    assert "milter_data_type" in policy.attributes["milter_manager_runtime_t"]


def test_fedora_branch_only_leaves_fedora_interface_names_unexpanded(build_dir: Path) -> None:
    """The distro_redhat branches cannot be compiled here; check they call only the names
    Fedora/RHEL policy uses instead of refpolicy's, and nothing else unresolved."""
    fedora = build_dir.parent / "selinux-build-redhat"
    fedora.mkdir(exist_ok=True)
    for suffix in (".te", ".if", ".fc"):
        shutil.copy(SOURCES / f"{MODULE}{suffix}", fedora)
    subprocess.run(["make", "-f", str(DEVEL_MAKEFILE), "DISTRO=redhat", f"tmp/{MODULE}.mod"],
                   cwd=fedora, capture_output=True, check=False)
    expanded = (fedora / "tmp" / f"{MODULE}.tmp").read_text()
    unexpanded = set(re.findall(r"^\s*([a-z0-9_]+)\(", expanded, re.MULTILINE))
    assert unexpanded == {"files_pid_file", "files_search_pids", "systemd_unit_file",
                          "init_status", "systemd_status_all_unit_files", "spamd_stream_connect"}


# --- systemd starts it in its own domain -----------------------------------------------------


def test_init_transitions_to_the_manager_domain_through_the_exec_type(policy: Policy) -> None:
    transitions = policy.sesearch("-T", "-s", "init_t", "-t", "milter_manager_exec_t",
                                  "-c", "process")
    assert "type_transition init_t milter_manager_exec_t:process milter_manager_t;" in transitions
    assert "transition" in policy.granted("init_t", "milter_manager_t", "process")
    assert "execute" in policy.granted("init_t", "milter_manager_exec_t", "file")
    assert "entrypoint" in policy.granted("milter_manager_t", "milter_manager_exec_t", "file")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/usr/sbin/milter-manager", "milter_manager_exec_t"),
        ("/etc/milter-manager/milter-manager.toml", "milter_manager_conf_t"),
        ("/etc/milter-manager/conf.d/10-local.toml", "milter_manager_conf_t"),
        ("/run/milter-manager", "milter_manager_runtime_t"),
        ("/run/milter-manager/milter-manager.sock", "milter_manager_runtime_t"),
        ("/var/run/milter-manager/milter-manager.sock", "milter_manager_runtime_t"),
        ("/var/spool/postfix/milter-manager/milter-manager.sock", "milter_manager_runtime_t"),
        ("/var/lib/milter-manager/spool/big-message", "milter_manager_var_lib_t"),
        ("/var/cache/milter-manager/detection.json", "milter_manager_cache_t"),
        ("/lib/systemd/system/milter-manager.service", "milter_manager_unit_t"),
        ("/usr/lib/systemd/system/milter-manager.socket", "milter_manager_unit_t"),
        # Unchanged on purpose: package code stays lib_t, the admin tool runs as the admin.
        ("/usr/lib/python3/dist-packages/mmd/__init__.py", "lib_t"),
        ("/usr/lib/milter-manager/mmd/__init__.py", "lib_t"),
        ("/usr/bin/milter-test-server", "bin_t"),
    ],
)
def test_file_contexts(policy: Policy, path: str, expected: str) -> None:
    assert policy.label(path) == expected


def test_systemd_creates_the_socket_files_and_the_listening_socket(policy: Policy) -> None:
    assert {"create", "unlink"} <= policy.granted("init_t", "milter_manager_runtime_t",
                                                  "sock_file")
    assert {"create", "add_name"} <= policy.granted("init_t", "milter_manager_runtime_t", "dir")
    # systemd labels the listening socket with the service's domain.
    assert {"create", "bind", "listen"} <= policy.granted("init_t", "milter_manager_t",
                                                          "unix_stream_socket")
    assert {"accept", "listen", "getattr"} <= policy.granted(
        "milter_manager_t", "milter_manager_t", "unix_stream_socket")
    assert "use" in policy.granted("milter_manager_t", "init_t", "fd")


# --- the MTA side ----------------------------------------------------------------------------


@pytest.mark.parametrize("mta", ["postfix_smtpd_t", "postfix_cleanup_t"])
def test_postfix_may_connect_to_the_manager(policy: Policy, mta: str) -> None:
    assert "connectto" in policy.granted_to(mta, "milter_manager_t", "unix_stream_socket")
    assert "write" in policy.granted_to(mta, "milter_manager_runtime_t", "sock_file")
    assert "search" in policy.granted_to(mta, "milter_manager_runtime_t", "dir")


# --- the children ----------------------------------------------------------------------------

CHILDREN = [
    # (child domain, its usual socket path)
    ("spamass_milter_t", "/var/spool/postfix/spamass/spamass.sock"),
    ("spamass_milter_t", "/run/spamass/spamass.sock"),
    ("greylist_milter_t", "/run/milter-greylist/greylist.sock"),
    ("dkim_milter_t", "/run/opendkim/opendkim.sock"),
    ("dkim_milter_t", "/var/spool/postfix/opendkim/opendkim.sock"),
    ("clamd_t", "/run/clamav/clamav-milter.ctl"),
    ("amavis_t", "/run/amavis/amavisd-milter.sock"),
    # rspamd runs as spamd_t; its socket must sit in a spamd_runtime_t directory.
    ("spamd_t", "/run/spamassassin/rspamd-milter.sock"),
]


@pytest.mark.parametrize(("child", "socket_path"), CHILDREN)
def test_manager_connects_to_each_catalog_child(policy: Policy, child: str,
                                                socket_path: str) -> None:
    socket_type = policy.label(socket_path)
    assert "connectto" in policy.granted("milter_manager_t", child, "unix_stream_socket")
    assert "write" in policy.granted("milter_manager_t", socket_type, "sock_file")
    assert "search" in policy.granted("milter_manager_t", socket_type, "dir")


def test_manager_reaches_child_sockets_inside_the_postfix_chroot(policy: Policy) -> None:
    assert "search" in policy.granted("milter_manager_t", "postfix_spool_t", "dir")


def test_inet_children_on_milter_ports_only_unless_the_admin_opts_in(policy: Policy) -> None:
    assert "name_connect" in policy.granted("milter_manager_t", "milter_port_t", "tcp_socket")
    assert "name_connect" in policy.granted("milter_manager_t", "spamd_port_t", "tcp_socket")
    assert "name_connect" not in policy.granted_by_default("milter_manager_t",
                                                           "unreserved_port_t", "tcp_socket")
    tunable = [rule for rule in policy.rules("allow", "s", "milter_manager_t")
               if rule.cond == "milter_manager_connect_unreserved_ports"]
    assert tunable and all(rule.branch and "name_connect" in rule.perms for rule in tunable)
    assert policy.booleans["milter_manager_connect_unreserved_ports"] is False
    for port in ("http_port_t", "smtp_port_t", "ssh_port_t", "mysqld_port_t"):
        assert "name_connect" not in policy.granted_by_default("milter_manager_t", port,
                                                               "tcp_socket"), port


# --- configuration and detection -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/etc/milter-manager/milter-manager.toml",
        "/etc/opendkim.conf",
        "/etc/opendmarc.conf",
        "/etc/clamav/clamav-milter.conf",
        "/etc/milter-greylist/greylist.conf",
        "/etc/mail/greylist.conf",
        "/etc/default/spamass-milter",
        "/etc/sysconfig/spamass-milter",
        "/etc/rspamd/worker-proxy.inc",
        "/lib/systemd/system/clamav-milter.service",
        "/usr/lib/systemd/system/opendkim.service",
        "/etc/systemd/system/spamass-milter.service",
    ],
)
def test_manager_reads_detection_inputs(policy: Policy, path: str) -> None:
    file_type = policy.label(path)
    assert {"read", "open"} <= policy.granted("milter_manager_t", file_type, "file"), file_type
    parent_type = policy.label(str(Path(path).parent))
    assert "search" in policy.granted("milter_manager_t", parent_type, "dir"), parent_type


def test_manager_reads_but_never_writes_its_config(policy: Policy) -> None:
    perms = policy.granted_by_default("milter_manager_t", "milter_manager_conf_t", "file")
    assert "read" in perms
    assert not perms & {"write", "append", "create", "unlink", "setattr"}


@pytest.mark.parametrize("file_type", ["milter_manager_var_lib_t", "milter_manager_cache_t",
                                       "milter_manager_tmp_t"])
def test_manager_manages_its_state_cache_and_temporary_files(policy: Policy,
                                                             file_type: str) -> None:
    assert {"create", "write", "unlink", "rename"} <= policy.granted(
        "milter_manager_t", file_type, "file")
    assert {"create", "add_name", "remove_name"} <= policy.granted(
        "milter_manager_t", file_type, "dir")


def test_temporary_files_get_the_manager_tmp_type(policy: Policy) -> None:
    transitions = policy.sesearch("-T", "-s", "milter_manager_t", "-t", "tmp_t", "-c", "file")
    assert "type_transition milter_manager_t tmp_t:file milter_manager_tmp_t;" in transitions


# --- systemd, journal, D-Bus -----------------------------------------------------------------


def test_journald_and_notify_sockets(policy: Policy) -> None:
    # /run/systemd/journal/socket and /dev/log
    assert policy.label("/run/systemd/journal/socket") == "devlog_t"
    assert "write" in policy.granted("milter_manager_t", "devlog_t", "sock_file")
    assert "sendto" in policy.granted("milter_manager_t", "syslogd_t", "unix_dgram_socket")
    # stdout/stderr: the journal stream socket systemd hands over
    assert "write" in policy.granted("milter_manager_t", "init_t", "unix_stream_socket")
    # $NOTIFY_SOCKET
    assert policy.label("/run/systemd/notify") == "init_runtime_t"
    assert "write" in policy.granted("milter_manager_t", "init_runtime_t", "sock_file")
    assert "sendto" in policy.granted("milter_manager_t", "init_t", "unix_dgram_socket")


def test_dbus_owns_its_name_and_talks_to_systemd(policy: Policy) -> None:
    assert "connectto" in policy.granted("milter_manager_t", "system_dbusd_t",
                                         "unix_stream_socket")
    assert {"acquire_svc", "send_msg"} <= policy.granted("milter_manager_t", "system_dbusd_t",
                                                         "dbus")
    assert "send_msg" in policy.granted("milter_manager_t", "init_t", "dbus")
    assert "send_msg" in policy.granted_to("init_t", "milter_manager_t", "dbus")
    assert "status" in policy.granted("milter_manager_t", "init_t", "system")
    assert "status" in policy.granted("milter_manager_t", "clamd_unit_t", "service")


def test_reload_reply_reaches_the_busctl_of_exec_reload(policy: Policy) -> None:
    # ExecReload=+busctl ... Reload runs as initrc_t on Debian: without the reply, systemctl
    # reload hangs under enforcing (seen in tests/vm).
    assert "send_msg" in policy.granted("milter_manager_t", "initrc_t", "dbus")
    assert "send_msg" in policy.granted_to("initrc_t", "milter_manager_t", "dbus")


def test_uvloop_io_uring_probe_is_refused_quietly(policy: Policy) -> None:
    assert "create" not in policy.granted_by_default("milter_manager_t", "milter_manager_t",
                                                     "anon_inode")
    assert "create" in policy.granted("milter_manager_t", "milter_manager_t", "anon_inode",
                                      kind="dontaudit")


def test_postfix_start_script_may_stat_the_socket_folder(policy: Policy) -> None:
    assert "getattr" in policy.granted_to("postfix_master_t", "milter_manager_runtime_t", "dir")
    assert not policy.granted_to("postfix_master_t", "milter_manager_runtime_t", "dir") & {
        "write", "add_name", "remove_name", "read"}


def test_postfix_config_and_binary_for_stress_and_detection(policy: Policy) -> None:
    # Stress conditions read main.cf/master.cf; detection stats /usr/sbin/postfix (tests/vm).
    assert {"read", "open"} <= policy.granted("milter_manager_t", "postfix_etc_t", "file")
    assert "getattr" in policy.granted("milter_manager_t", "postfix_master_exec_t", "file")
    assert not policy.granted("milter_manager_t", "postfix_master_exec_t", "file") & {
        "execute", "execute_no_trans", "read"}


def test_start_up_probes_of_openssl_and_libselinux(policy: Policy) -> None:
    # Seen at daemon start in the enforcing guest (tests/vm).
    assert "read" in policy.granted("milter_manager_t", "cert_t", "file")
    assert "getattr" in policy.granted("milter_manager_t", "security_t", "filesystem")
    assert "search" in policy.granted("milter_manager_t", "selinux_config_t", "dir")


def test_report_runs_in_its_own_domain_with_journalctl_and_rrdtool(policy: Policy) -> None:
    # milter-manager-report.service: SELinuxContext= enters milter_manager_report_t (tests/vm).
    assert "transition" in policy.granted("init_t", "milter_manager_report_t", "process")
    assert "entrypoint" in policy.granted("milter_manager_report_t", "milter_manager_exec_t",
                                          "file")
    assert "execute_no_trans" in policy.granted("milter_manager_report_t", "bin_t", "file")
    assert "use" in policy.granted("milter_manager_report_t", "init_t", "fd")
    assert "search" in policy.granted("milter_manager_report_t", "tmp_t", "dir")
    assert "create" in policy.granted("milter_manager_report_t", "milter_manager_tmp_t", "file")
    assert "map" in policy.granted("milter_manager_report_t", "milter_manager_var_lib_t", "file")
    assert "getattr" in policy.granted("milter_manager_report_t", "fs_t", "filesystem")
    assert "read" in policy.granted("milter_manager_report_t", "systemd_journal_t", "file")
    assert "write" in policy.granted("milter_manager_report_t", "milter_manager_var_lib_t",
                                     "file")
    # ... and it stays off the milter side: no milter sockets, no network, no D-Bus name
    assert not policy.granted("milter_manager_report_t", "milter_manager_t",
                              "unix_stream_socket") & {"connectto"}
    assert not policy.granted("milter_manager_report_t", "system_dbusd_t", "dbus")
    assert "name_connect" not in policy.granted("milter_manager_report_t", "milter_port_t",
                                                "tcp_socket")


@pytest.mark.parametrize("admin", ["unconfined_t", "sysadm_t"])
def test_admins_call_the_manager_over_dbus_and_get_replies(policy: Policy, admin: str) -> None:
    assert "send_msg" in policy.granted_to(admin, "milter_manager_t", "dbus")
    assert "send_msg" in policy.granted("milter_manager_t", admin, "dbus")


def test_interfaces_grant_what_they_promise(policy: Policy) -> None:
    probe = "mmiftest_t"
    assert "connectto" in policy.granted(probe, "milter_manager_t", "unix_stream_socket")
    assert "write" in policy.granted(probe, "milter_manager_conf_t", "file")
    assert "read" in policy.granted(probe, "milter_manager_var_lib_t", "file")
    assert "send_msg" in policy.granted(probe, "milter_manager_t", "dbus")
    assert "send_msg" in policy.granted("milter_manager_t", probe, "dbus")
    assert {"start", "stop", "status"} <= policy.granted(probe, "milter_manager_unit_t",
                                                         "service")
    assert {"ptrace", "sigkill"} <= policy.granted(probe, "milter_manager_t", "process")


# --- what it must not do ---------------------------------------------------------------------


def test_python_bytecode_writes_under_usr_are_refused_quietly(policy: Policy) -> None:
    for file_type in ("lib_t", "usr_t"):
        assert not policy.granted_by_default("milter_manager_t", file_type, "dir") & {
            "write", "add_name"}
        assert not policy.granted_by_default("milter_manager_t", file_type, "file") & {
            "write", "create"}
        assert {"write", "add_name"} <= policy.granted("milter_manager_t", file_type, "dir",
                                                       kind="dontaudit")


@pytest.mark.parametrize(
    ("file_type", "cls", "forbidden"),
    [
        ("shadow_t", "file", {"read", "open", "getattr"}),
        ("user_home_t", "file", {"read", "open"}),
        ("user_home_t", "dir", {"read", "search"}),
        # Searching /home/USER comes with auth_use_nsswitch; listing it does not.
        ("user_home_dir_t", "dir", {"read", "write", "add_name"}),
        ("dkim_milter_private_key_t", "file", {"read", "open"}),
        ("etc_t", "file", {"write", "append", "create", "unlink", "setattr"}),
        ("etc_t", "dir", {"write", "add_name", "remove_name"}),
        ("bin_t", "file", {"write", "append", "create", "unlink", "execute_no_trans"}),
        ("bin_t", "dir", {"write", "add_name", "remove_name"}),
        ("shell_exec_t", "file", {"execute", "execute_no_trans"}),
        ("spamass_milter_t", "process", {"ptrace", "signal", "sigkill"}),
        ("spamass_milter_t", "file", {"read"}),  # /proc/PID of other daemons
    ],
)
def test_manager_is_denied(policy: Policy, file_type: str, cls: str,
                           forbidden: set[str]) -> None:
    assert not policy.granted_by_default("milter_manager_t", file_type, cls) & forbidden
    # Not even behind a boolean:
    assert not policy.granted("milter_manager_t", file_type, cls, unconditional=False) & forbidden


def test_manager_runs_no_other_program(policy: Policy) -> None:
    transitions = [rule for rule in policy.rules("allow", "s", "milter_manager_t")
                   if rule.cls == "process" and "transition" in rule.perms]
    assert transitions == []
    executable = [rule.tgt for rule in policy.rules("allow", "s", "milter_manager_t")
                  if rule.cls == "file" and "execute_no_trans" in rule.perms]
    assert executable == []


def test_manager_has_no_capabilities(policy: Policy) -> None:
    for cls in ("capability", "capability2", "cap_userns"):
        assert policy.granted_by_default("milter_manager_t", "milter_manager_t", cls) == set()


def test_manager_is_neither_unconfined_nor_permissive(policy: Policy) -> None:
    attributes = policy.attributes["milter_manager_t"]
    assert not {attr for attr in attributes if "unconfined" in attr}
    assert not attributes & {"can_change_object_identity", "can_relabelto_shadow_passwords",
                             "kern_unconfined", "privfd"}
    permissive = run(["seinfo", str(policy.policy), "--permissive", "-x"])
    assert "milter_manager_t" not in permissive

