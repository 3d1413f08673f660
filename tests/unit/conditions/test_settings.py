from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mmd.conditions.custom import HeaderClause
from mmd.conditions.errors import ConditionConfigError
from mmd.conditions.remote_network import DEFAULT_LOCAL_NETWORKS
from mmd.conditions.settings import ConditionSettings, settings_from_table
from mmd.conditions.trusted_domain import DEFAULT_TRUSTED_DOMAINS
from mmd.engine.stages import Stage

FULL = r"""
[conditions.s25r]
extra_whitelist = [".smtp.example.com", "/^mx\\d+\\.example\\.org$/"]
extra_blacklist = ["/\\.dyn\\./"]
default_whitelist = false
default_blacklist = true
ipv4_only = false

[conditions.remote_network]
local = ["10.0.0.0/8"]
extra_local = ["198.51.100.0/24", "2001:db8::/32"]
remote = ["10.99.0.0/16"]

[conditions.trusted_domain]
domains = ["gmail.com"]
extra_domains = [".example.org"]
files = ["trusted.list"]

[conditions.stress]
threshold = 40
postfix_config_directory = "/srv/postfix"

[conditions.restrict_accounts]
accounts = ["alice@example.com", "example.net"]
files = ["/etc/milter-manager/accounts.list"]
match_on = "sender"
recipients = "all"

[[conditions.custom]]
name = "Spam Flagged"
stage = "end-of-header"
effect = "skip"
header = [{ name = "X-Spam-Flag", regex = "^yes" }]

[[conditions.custom]]
name = "Partner"
stage = "envelope-from"
client_address = ["192.0.2.0/24"]
sender = ["partner.example"]
authenticated = false
macros = { "{partner}" = "yes" }
"""


def parse(text: str, base: str | None = "/etc/milter-manager") -> ConditionSettings:
    table = tomllib.loads(text)
    return settings_from_table(table.get("conditions", {}), base_directory=base)


def test_defaults() -> None:
    settings = parse("")
    assert settings == ConditionSettings()
    assert settings.remote_network.local == DEFAULT_LOCAL_NETWORKS
    assert settings.trusted_domain.domains == DEFAULT_TRUSTED_DOMAINS
    assert settings.stress.threshold is None
    assert settings.s25r.ipv4_only is True
    assert settings.restrict_accounts.recipients == "any"


def test_full_table() -> None:
    settings = parse(FULL)
    assert settings.s25r.extra_whitelist == (".smtp.example.com", r"/^mx\d+\.example\.org$/")
    assert settings.s25r.default_whitelist is False
    assert settings.s25r.ipv4_only is False
    assert settings.remote_network.remote == ("10.99.0.0/16",)
    assert settings.remote_network.extra_local == ("198.51.100.0/24", "2001:db8::/32")
    assert settings.trusted_domain.files == (str(Path("/etc/milter-manager/trusted.list")),)
    assert settings.stress.threshold == 40
    assert settings.stress.postfix_config_directory == "/srv/postfix"
    assert settings.restrict_accounts.match_on == "sender"
    assert settings.restrict_accounts.recipients == "all"
    spam, partner = settings.custom
    assert spam.stage is Stage.END_OF_HEADERS
    assert spam.effect == "skip"
    assert spam.header == (HeaderClause("X-Spam-Flag", "^yes"),)
    assert partner.stage is Stage.MAIL
    assert partner.effect == "apply"
    assert partner.authenticated is False
    assert partner.macros == (("{partner}", "yes"),)


# (TOML, key path of the error, text of the message)
ERRORS: list[tuple[str, str, str]] = [
    ("[conditions.s26r]\n", "conditions.s26r", "unknown key"),
    ("[conditions.s25r]\nwhitelist = []\n", "conditions.s25r.whitelist", "unknown key"),
    ("[conditions.s25r]\nipv4_only = 1\n", "conditions.s25r.ipv4_only", "expected true or false"),
    ('[conditions.s25r]\nextra_whitelist = ".a"\n', "conditions.s25r.extra_whitelist", "array"),
    ("[conditions.s25r]\nextra_whitelist = [1]\n", "conditions.s25r.extra_whitelist[0]", "string"),
    (
        '[conditions.s25r]\nextra_blacklist = ["/ok/", "/(bad/"]\n',
        "conditions.s25r.extra_blacklist[1]",
        "bad regular expression",
    ),
    (
        '[conditions.s25r]\nextra_whitelist = ["two words"]\n',
        "conditions.s25r.extra_whitelist[0]",
        "bad entry",
    ),
    (
        '[conditions.remote_network]\nlocal = ["10.0.0.1/8"]\n',
        "conditions.remote_network.local[0]",
        "bad network",
    ),
    (
        '[conditions.remote_network]\nremote = ["fe80::/10", "nonsense"]\n',
        "conditions.remote_network.remote[1]",
        "bad network",
    ),
    (
        '[conditions.trusted_domain]\ndomains = ["a@b.example"]\n',
        "conditions.trusted_domain.domains[0]",
        "no addresses",
    ),
    (
        '[conditions.trusted_domain]\nfiles = ["rel.list"]\n',
        "conditions.trusted_domain.files[0]",
        "absolute path",
    ),
    ("[conditions.stress]\nthreshold = -1\n", "conditions.stress.threshold", "integer >= 0"),
    ('[conditions.stress]\nthreshold = "75"\n', "conditions.stress.threshold", "integer >= 0"),
    ("[conditions.stress]\nthreshold = 7.5\n", "conditions.stress.threshold", "integer >= 0"),
    (
        '[conditions.restrict_accounts]\nrecipients = "some"\n',
        "conditions.restrict_accounts.recipients",
        "expected 'any' or 'all'",
    ),
    (
        '[conditions.restrict_accounts]\nmatch_on = "helo"\n',
        "conditions.restrict_accounts.match_on",
        "'recipient' or 'sender'",
    ),
    (
        '[conditions.restrict_accounts]\naccounts = ["@example.com"]\n',
        "conditions.restrict_accounts.accounts[0]",
        "USER@DOMAIN",
    ),
    ("[conditions.custom]\nname = 'x'\n", "conditions.custom", "array of tables"),
    ("[[conditions.custom]]\nstage = 'connect'\n", "conditions.custom[0].name", "missing"),
    ("[[conditions.custom]]\nname = 'x'\n", "conditions.custom[0].stage", "missing"),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'mail'\n",
        "conditions.custom[0].stage",
        "'connect' or 'helo' or 'envelope-from'",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'connect'\nsender = ['a.example']\n",
        "conditions.custom[0].sender",
        "not known at stage 'connect'",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'connect'\neffect = 'maybe'\n",
        "conditions.custom[0].effect",
        "'apply' or 'skip' or 'mark'",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'connect'\n",
        "conditions.custom[0]",
        "at least one clause",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'connect'\nclient_ip = ['10.0.0.0/8']\n",
        "conditions.custom[0].client_ip",
        "unknown key",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'end-of-header'\n"
        "header = [{ name = 'Subject' }]\n",
        "conditions.custom[0].header[0].regex",
        "missing",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'end-of-header'\n"
        "header = { name = 'Subject', regex = '(' }\n",
        "conditions.custom[0].header.regex",
        "bad regular expression",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'connect'\neffect = 'skip'\n"
        "client_address = ['10.0.0.0/8']\nmacros = { a = 'b' }\n",
        "conditions.custom[0].macros",
        "gives no macros",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'connect'\n"
        "client_address = ['10.0.0.0/8']\nmacros = { a = 1 }\n",
        "conditions.custom[0].macros.a",
        "expected a string",
    ),
    (
        "[[conditions.custom]]\nname = 'x'\nstage = 'connect'\nclient_address = ['10.0.0.0/8']\n"
        "[[conditions.custom]]\nname = 'x'\nstage = 'helo'\nhelo = ['a']\n",
        "conditions.custom[1].name",
        "already defined at conditions.custom[0]",
    ),
]


@pytest.mark.parametrize(("text", "key_path", "message"), ERRORS)
def test_errors(text: str, key_path: str, message: str) -> None:
    with pytest.raises(ConditionConfigError) as caught:
        parse(text, base=None)
    assert caught.value.key_path == key_path
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{key_path}: ")


def test_table_must_be_a_table() -> None:
    with pytest.raises(ConditionConfigError) as caught:
        settings_from_table({"s25r": ["x"]})
    assert caught.value.key_path == "conditions.s25r"
