"""Every milter detection knows, as data: adding a milter is adding one entry.

Each entry says which units may run it (Debian/Ubuntu names first, then
RHEL/Fedora), which files hold its socket and how to read them, the socket
its package uses when nothing is configured, and the applicable conditions
a detected instance gets by default (the reference's defaults: greylist only
S25R-looking remote, unauthenticated clients; spam checks skip local,
authenticated clients and back off under stress).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmd.detection.configs import (
    ConfigParser,
    clamav_milter,
    colon_keyword,
    keyword,
    milter_greylist,
    rspamd_proxy,
)

# Variables any milter's environment file may use for its socket, in order.
GENERIC_SOCKET_VARIABLES: tuple[str, ...] = (
    "SOCKET",
    "SOCKET_ADDRESS",
    "MILTER_SOCKET",
    "CONNECTION_SPEC",
)

GREYLIST_CONDITIONS = (
    "S25R",
    "Remote Network",
    "Unauthenticated",
    "Trusted Domain",
    "Stress Notify",
)
CONTENT_SCAN_CONDITIONS = ("Remote Network", "Unauthenticated", "No Stress")


@dataclass(frozen=True, slots=True)
class PackagedSocket:
    """The socket a package uses when its files name none.

    ``family`` ("debian", "redhat" or "" for any) and ``requires`` (a host
    path that must exist, e.g. /usr/sbin/postfix for Debian's spamass-milter
    init script) choose between a package's variants.
    """

    spec: str
    family: str = ""
    requires: str = ""


@dataclass(frozen=True, slots=True)
class MilterEntry:
    name: str
    description: str
    units: tuple[str, ...]  # service units, Debian/Ubuntu first, then RHEL/Fedora
    config_files: tuple[str, ...] = ()  # the milter's own files, first readable hit wins
    parser: ConfigParser | None = None  # how to read config_files
    setting: str = ""  # the setting the parser reads, for the docs
    config_option: str = ""  # ExecStart option naming the config file ("" = none)
    socket_option: str = "-p"  # ExecStart option naming the socket ("" = none)
    environment_files: tuple[str, ...] = ()  # /etc/default, /etc/sysconfig (shell syntax)
    socket_variables: tuple[str, ...] = ()  # milter-specific names, before the generic ones
    socket_units: tuple[str, ...] = ()
    packaged_sockets: tuple[PackagedSocket, ...] = ()
    default_conditions: tuple[str, ...] = ()

    def variables(self) -> tuple[str, ...]:
        names = self.socket_variables + GENERIC_SOCKET_VARIABLES
        return tuple(dict.fromkeys(names))


def _env(name: str) -> tuple[str, str]:
    return (f"/etc/default/{name}", f"/etc/sysconfig/{name}")


CATALOG: tuple[MilterEntry, ...] = (
    MilterEntry(
        name="milter-greylist",
        description="Greylisting (milter-greylist)",
        units=("milter-greylist.service",),
        config_files=("/etc/milter-greylist/greylist.conf", "/etc/mail/greylist.conf"),
        parser=milter_greylist,
        setting="`socket`, largest `tarpit`",
        config_option="-f",
        environment_files=_env("milter-greylist"),
        packaged_sockets=(
            PackagedSocket("unix:/var/run/milter-greylist/milter-greylist.sock", "debian"),
            PackagedSocket("unix:/run/milter-greylist/milter-greylist.sock", "redhat"),
        ),
        default_conditions=GREYLIST_CONDITIONS,
    ),
    MilterEntry(
        name="clamav-milter",
        description="Virus scanning with ClamAV (clamav-milter)",
        units=("clamav-milter.service",),
        config_files=("/etc/clamav/clamav-milter.conf", "/etc/mail/clamav-milter.conf"),
        parser=clamav_milter,
        setting="`MilterSocket` (an `Example` line: not configured)",
        config_option="-c",
        socket_option="",
        environment_files=_env("clamav-milter"),
    ),
    MilterEntry(
        name="spamass-milter",
        description="Spam filtering with SpamAssassin (spamass-milter)",
        units=("spamass-milter.service", "spamass-milter-root.service"),
        environment_files=_env("spamass-milter"),
        socket_variables=("SOCKET",),
        packaged_sockets=(
            # Debian's init script: the Postfix-chroot socket when Postfix is installed.
            PackagedSocket(
                "unix:/var/spool/postfix/spamass/spamass.sock", "debian", "/usr/sbin/postfix"
            ),
            PackagedSocket("unix:/var/run/spamass/spamass.sock", "debian"),
            PackagedSocket("unix:/run/spamass-milter/spamass-milter.sock", "redhat"),
        ),
        default_conditions=CONTENT_SCAN_CONDITIONS,
    ),
    MilterEntry(
        name="opendkim",
        description="DKIM signing and verification (OpenDKIM)",
        units=("opendkim.service",),
        config_files=("/etc/opendkim.conf",),
        parser=keyword("Socket"),
        setting="`Socket`",
        config_option="-x",
        packaged_sockets=(
            PackagedSocket("unix:/run/opendkim/opendkim.sock", "debian"),
            PackagedSocket("inet:8891@localhost", "redhat"),
        ),
    ),
    MilterEntry(
        name="dkim-filter",
        description="DKIM signing and verification (dkim-filter, OpenDKIM's predecessor)",
        units=("dkim-filter.service",),
        config_files=("/etc/dkim-filter.conf",),
        parser=keyword("Socket"),
        setting="`Socket`",
        config_option="-x",
        environment_files=_env("dkim-filter"),
        socket_variables=("SOCKET",),
        packaged_sockets=(PackagedSocket("unix:/var/run/dkim-filter/dkim-filter.sock", "debian"),),
    ),
    MilterEntry(
        name="opendmarc",
        description="DMARC verification (OpenDMARC)",
        units=("opendmarc.service",),
        config_files=("/etc/opendmarc.conf",),
        parser=keyword("Socket"),
        setting="`Socket`",
        config_option="-c",
        packaged_sockets=(
            PackagedSocket("unix:/run/opendmarc/opendmarc.sock", "debian"),
            PackagedSocket("inet:8893@localhost", "redhat"),
        ),
    ),
    MilterEntry(
        name="rspamd",
        description="Spam filtering with rspamd (its proxy worker in milter mode)",
        units=("rspamd.service",),
        # rspamd's own layering: override.d beats local.d beats the stock file.
        config_files=(
            "/etc/rspamd/override.d/worker-proxy.inc",
            "/etc/rspamd/local.d/worker-proxy.inc",
            "/etc/rspamd/worker-proxy.inc",
        ),
        parser=rspamd_proxy,
        setting="`bind_socket` (`milter = no`: not a milter)",
        socket_option="",
        packaged_sockets=(PackagedSocket("inet:11332@localhost"),),
        default_conditions=CONTENT_SCAN_CONDITIONS,
    ),
    MilterEntry(
        name="amavisd-milter",
        description="Content filtering with amavisd-new (amavisd-milter)",
        units=("amavisd-milter.service", "amavisd-new-milter.service"),
        socket_option="-s",  # -p is its pid file
        environment_files=_env("amavisd-milter"),
        socket_variables=("MILTERSOCKET",),
        packaged_sockets=(
            PackagedSocket("unix:/var/lib/amavis/amavisd-milter.sock", "debian"),
            PackagedSocket("unix:/run/amavisd/amavisd-milter.sock", "redhat"),
        ),
    ),
    MilterEntry(
        name="dkimpy-milter",
        description="DKIM signing and verification (dkimpy-milter)",
        units=("dkimpy-milter.service",),
        config_files=("/etc/dkimpy-milter/dkimpy-milter.conf",),
        parser=keyword("Socket"),
        setting="`Socket`",
        config_option="",
        socket_option="",
        packaged_sockets=(PackagedSocket("inet:8892@localhost"),),
    ),
    MilterEntry(
        name="pyspf-milter",
        description="SPF verification (pyspf-milter)",
        units=("pyspf-milter.service",),
        config_files=("/etc/pyspf-milter/pyspf-milter.conf",),
        parser=keyword("Socket"),
        setting="`Socket`",
        socket_option="",
        packaged_sockets=(PackagedSocket("unix:/run/pyspf-milter/pyspf-milter.sock"),),
    ),
    MilterEntry(
        name="enma",
        description="Sender authentication: SPF, Sender ID, DKIM (ENMA)",
        units=("enma.service",),
        config_files=("/etc/enma.conf", "/etc/enma/enma.conf"),
        parser=colon_keyword("milter.socket"),
        setting="`milter.socket`",
        config_option="-c",
        socket_option="",
        environment_files=_env("enma"),
        packaged_sockets=(PackagedSocket("inet:10025@127.0.0.1"),),
    ),
    MilterEntry(
        name="spfmilter",
        description="SPF verification (spfmilter)",
        units=("spfmilter.service",),
        environment_files=_env("spfmilter"),
        packaged_sockets=(PackagedSocket("unix:/var/run/spfmilter/spfmilter.sock"),),
    ),
)


def entry(name: str) -> MilterEntry:
    """The catalog entry named ``name``; KeyError when unknown."""
    for candidate in CATALOG:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def markdown_table(catalog: tuple[MilterEntry, ...] = CATALOG) -> str:
    """The catalog as the table in docs/detection.md (a test keeps the two equal)."""
    rows = [
        "| milter | units | socket read from, in order | packaged default | default conditions |",
        "| --- | --- | --- | --- | --- |",
    ]
    for item in catalog:
        sources = [f"ExecStart `{item.socket_option}`"] if item.socket_option else []
        if item.config_files:
            named = f"the `{item.config_option}` file, else " if item.config_option else ""
            files = ", ".join(f"`{path}`" for path in item.config_files)
            sources.append(f"{named}{files}: {item.setting}")
        variables = ", ".join([*item.socket_variables, "generic variables"])
        env_files = ", ".join(f"`{path}`" for path in item.environment_files)
        sources.append(f"unit environment{' and ' + env_files if env_files else ''}: {variables}")
        if item.socket_units:
            sources.append("ListenStream of " + ", ".join(item.socket_units))
        defaults = [f"`{p.spec}`{_when(p)}" for p in item.packaged_sockets]
        cells = (
            item.name,
            ", ".join(item.units),
            "; ".join(sources),
            "; ".join(defaults) or "none",
            ", ".join(item.default_conditions) or "none",
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _when(packaged: PackagedSocket) -> str:
    conditions = [packaged.family] if packaged.family else []
    if packaged.requires:
        conditions.append(f"if `{packaged.requires}` exists")
    return f" ({', '.join(conditions)})" if conditions else ""
