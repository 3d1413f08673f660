"""Loading milter-manager.toml and drop-ins over detected milters."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from mmd.config.loader import ConfigError, apply_overrides, load_configuration
from mmd.config.model import (
    DEFAULT_CONNECTION_SPEC,
    Configuration,
    ManagerConfig,
    MilterConfig,
    Status,
)
from mmd.daemon.generation import build_generation
from mmd.detection.model import DetectedMilter
from tests.support.detected import OPENDKIM, detected_milter

GREYLIST = detected_milter(
    "milter-greylist",
    "unix:/var/run/milter-greylist/milter-greylist.sock",
    "/etc/milter-greylist/greylist.conf",
    enabled=False,
    applicable_conditions=("S25R",),
    description="greylisting",
    extra_timeout=125.0,
)


def write(config_dir: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = config_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def load(tmp_path: Path, files: Mapping[str, str],
         detected: tuple[DetectedMilter, ...] = ()) -> Configuration:
    write(tmp_path, files)
    return load_configuration(tmp_path, detected)


def problems(tmp_path: Path, files: Mapping[str, str],
             detected: tuple[DetectedMilter, ...] = ()) -> list[str]:
    write(tmp_path, files)
    with pytest.raises(ConfigError) as caught:
        load_configuration(tmp_path, detected)
    assert caught.value.configuration is not None
    return caught.value.problems


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_configuration(tmp_path)
    assert config.manager == ManagerConfig()
    assert config.manager.connection_spec == DEFAULT_CONNECTION_SPEC
    assert config.manager.origin("connection_spec").text == "default"
    assert config.milters == []
    assert config.files == []
    assert config.conditions_table == {}


FULL = """\
[manager]
connection_spec = "inet:10025@[127.0.0.1]"
unix_socket_mode = "0600"
unix_socket_group = "postfix"
fallback_status = "reject"
fallback_status_at_disconnect = "discard"
max_connections = 50
chunk_size = 4096
max_packet_size = 65536
body_memory_limit = 0
shutdown_timeout = 5

[[milter]]
name = "spamass-milter"
connection_spec = "unix:/var/spool/postfix/spamass/spamass.sock"
description = "SpamAssassin"
enabled = false
fallback_status = "temporary-failure"
evaluation_mode = true
applicable_conditions = ["Remote Network", "Unauthentication"]
connection_timeout = 10
writing_timeout = 1.5
reading_timeout = 2
end_of_message_timeout = 60
"""


def test_full_file_sets_every_key_with_its_line(tmp_path: Path) -> None:
    config = load(tmp_path, {"milter-manager.toml": FULL})
    main = str(tmp_path / "milter-manager.toml")
    assert config.files == [main]
    assert config.manager == ManagerConfig(
        connection_spec="inet:10025@[127.0.0.1]", unix_socket_mode=0o600,
        unix_socket_group="postfix", fallback_status=Status.REJECT,
        fallback_status_at_disconnect=Status.DISCARD, max_connections=50, chunk_size=4096,
        max_packet_size=65536, body_memory_limit=0, shutdown_timeout=5.0,
        origins=config.manager.origins,
    )
    assert config.manager.origin("connection_spec").text == f"{main}:2"
    assert config.manager.origin("shutdown_timeout").text == f"{main}:11"
    [milter] = config.milters
    assert milter == MilterConfig(
        name="spamass-milter", connection_spec="unix:/var/spool/postfix/spamass/spamass.sock",
        description="SpamAssassin", enabled=False, fallback_status=Status.TEMPORARY_FAILURE,
        evaluation_mode=True, applicable_conditions=["Remote Network", "Unauthentication"],
        connection_timeout=10.0, writing_timeout=1.5, reading_timeout=2.0,
        end_of_message_timeout=60.0, origins=milter.origins,
    )
    assert milter.origin("name").text == f"{main}:14"
    assert milter.origin("end_of_message_timeout").text == f"{main}:24"
    assert config.enabled_milters() == []


def test_unix_socket_mode_accepts_octal_integer(tmp_path: Path) -> None:
    config = load(tmp_path, {"milter-manager.toml": "[manager]\nunix_socket_mode = 0o640\n"})
    assert config.manager.unix_socket_mode == 0o640


def test_drop_ins_apply_in_lexical_order_later_wins(tmp_path: Path) -> None:
    config = load(tmp_path, {
        "milter-manager.toml": '[manager]\nfallback_status = "reject"\nmax_connections = 1\n',
        "milter-manager.d/20-b.toml": '[manager]\nfallback_status = "discard"\n',
        "milter-manager.d/10-a.toml": '\n[manager]\nfallback_status = "temporary-failure"\n',
        "milter-manager.d/ignored.conf": "not toml at all [",
    })
    d = tmp_path / "milter-manager.d"
    assert config.files == [str(tmp_path / "milter-manager.toml"), str(d / "10-a.toml"),
                            str(d / "20-b.toml")]
    assert config.manager.fallback_status is Status.DISCARD
    assert config.manager.origin("fallback_status").text == f"{d / '20-b.toml'}:2"
    assert config.manager.max_connections == 1


def test_drop_ins_without_main_file(tmp_path: Path) -> None:
    config = load(tmp_path, {"milter-manager.d/x.toml": "[manager]\nmax_connections = 3\n"})
    assert config.manager.max_connections == 3


def test_detected_milters_come_first_with_their_origin(tmp_path: Path) -> None:
    config = load_configuration(tmp_path, (OPENDKIM, GREYLIST))
    assert [m.name for m in config.milters] == ["opendkim", "milter-greylist"]
    dkim, grey = config.milters
    assert dkim.connection_spec == "local:/run/opendkim/opendkim.sock"
    assert dkim.origin("connection_spec").text == OPENDKIM.origin
    assert dkim.origin("enabled").text == OPENDKIM.origin
    assert dkim.origin("fallback_status").text == "default"
    assert grey.enabled is False
    assert grey.applicable_conditions == ["S25R"]
    assert grey.description == "greylisting"
    assert grey.reading_timeout == 7.0 + 125.0
    assert grey.writing_timeout == 7.0 + 125.0
    assert grey.origin("reading_timeout").text == GREYLIST.origin
    assert grey.connection_timeout == 297.0


def test_milter_table_overrides_only_the_fields_it_sets(tmp_path: Path) -> None:
    config = load(tmp_path, {
        "milter-manager.toml": '[[milter]]\nname = "extra"\nconnection_spec = "inet:2000"\n'
                               '\n[[milter]]\nname = "opendkim"\nfallback_status = "reject"\n',
        "milter-manager.d/50.toml": '[[milter]]\nname = "milter-greylist"\nenabled = true\n',
    }, (OPENDKIM, GREYLIST))
    assert [m.name for m in config.milters] == ["opendkim", "milter-greylist", "extra"]
    dkim, grey, extra = config.milters
    main = tmp_path / "milter-manager.toml"
    assert dkim.fallback_status is Status.REJECT
    assert dkim.origin("fallback_status").text == f"{main}:7"
    assert dkim.connection_spec == OPENDKIM.connection_spec
    assert dkim.origin("connection_spec").text == OPENDKIM.origin
    assert grey.enabled is True
    assert grey.origin("enabled").text == f"{tmp_path / 'milter-manager.d/50.toml'}:3"
    assert grey.applicable_conditions == ["S25R"]
    assert extra.connection_spec == "inet:2000"
    assert extra.origin("name").text == f"{main}:2"


def test_later_file_changes_a_configured_milter_without_connection_spec(tmp_path: Path) -> None:
    config = load(tmp_path, {
        "milter-manager.toml": '[[milter]]\nname = "a"\nconnection_spec = "inet:2000"\n',
        "milter-manager.d/1.toml": '[[milter]]\nname = "a"\nevaluation_mode = true\n',
    })
    [milter] = config.milters
    assert milter.evaluation_mode is True
    assert milter.connection_spec == "inet:2000"


def test_reuse_connection_opts_one_child_out(tmp_path: Path) -> None:
    config = load(tmp_path, {
        "milter-manager.toml": '[[milter]]\nname = "a"\nconnection_spec = "inet:2000"\n'
        'reuse_connection = false\n[[milter]]\nname = "b"\nconnection_spec = "inet:2001"\n',
    })
    assert [m.reuse_connection for m in config.milters] == [False, True]
    children = build_generation(config, 1).children
    assert [(c.name, c.reuse) for c in children] == [("a", False), ("b", True)]


def test_new_milters_keep_file_order(tmp_path: Path) -> None:
    text = "".join(f'[[milter]]\nname = "{n}"\nconnection_spec = "inet:{p}"\n'
                   for n, p in (("z", 1), ("a", 2), ("m", 3)))
    assert [m.name for m in load(tmp_path, {"milter-manager.toml": text}).milters] == [
        "z", "a", "m"]


def test_conditions_table_passes_through_with_locations(tmp_path: Path) -> None:
    config = load(tmp_path, {
        "milter-manager.toml": '[conditions]\ntrusted_domains = ["example.com"]\n'
                               '[conditions.remote_network]\nlocal = ["192.168.0.0/24"]\n',
        "milter-manager.d/1.toml": '[conditions.remote_network]\nlocal = ["10.0.0.0/8"]\n'
                                   'remote = []\n',
    })
    assert config.conditions_table == {
        "trusted_domains": ["example.com"],
        "remote_network": {"local": ["10.0.0.0/8"], "remote": []},
    }
    main, drop_in = tmp_path / "milter-manager.toml", tmp_path / "milter-manager.d/1.toml"
    assert config.condition_origin("trusted_domains").text == f"{main}:2"
    assert config.condition_origin("remote_network", "local").text == f"{drop_in}:2"
    assert config.condition_origin("remote_network", "remote", 0).text == f"{drop_in}:3"
    assert config.condition_origin("nothing").text == f"{main}:1"


def test_command_line_wins_and_survives_reload(tmp_path: Path) -> None:
    files = {"milter-manager.toml": '[manager]\nconnection_spec = "inet:1@localhost"\n'
                                    '[[milter]]\nname = "a"\nconnection_spec = "inet:2"\n'}
    overrides = {"connection_spec": "unix:/tmp/mmd.sock", "manager.max_connections": "7",
                 "milter.a.enabled": "false", "milter.a.reading_timeout": 3}
    config = apply_overrides(load(tmp_path, files), overrides)
    assert config.manager.connection_spec == "unix:/tmp/mmd.sock"
    assert config.manager.origin("connection_spec").text == "command line"
    assert config.manager.max_connections == 7
    assert config.milters[0].enabled is False
    assert config.milters[0].origin("enabled").text == "command line"
    assert config.milters[0].reading_timeout == 3.0
    assert config.overrides == overrides
    # reload: the file changes, the daemon applies the remembered overrides again
    write(tmp_path, {"milter-manager.toml": '[manager]\nconnection_spec = "inet:9@localhost"\n'
                                            'max_connections = 1\n'
                                            '[[milter]]\nname = "a"\nconnection_spec = "inet:2"\n'})
    reloaded = apply_overrides(load_configuration(tmp_path), config.overrides)
    assert reloaded.manager.connection_spec == "unix:/tmp/mmd.sock"
    assert reloaded.manager.max_connections == 7


def test_apply_overrides_leaves_the_input_alone(tmp_path: Path) -> None:
    config = load_configuration(tmp_path)
    apply_overrides(config, {"fallback_status": "reject"})
    assert config.manager.fallback_status is Status.ACCEPT
    assert config.overrides == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"connection_spec": "tcp:1"}, "command line: connection_spec: 'tcp:1': unknown socket"),
        ({"fallback_status": "maybe"}, "command line: fallback_status: unknown status 'maybe'"),
        ({"max_conections": "1"}, "did you mean 'max_connections'?"),
        ({"max_connections": "many"}, "command line: max_connections: expected an integer"),
        ({"milter.nosuch.enabled": "true"}, "no milter named 'nosuch'"),
        ({"milter.opendkim.enabled": "perhaps"}, "expected true or false"),
    ],
)
def test_bad_overrides(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    config = load_configuration(tmp_path, (OPENDKIM,))
    with pytest.raises(ConfigError) as caught:
        apply_overrides(config, overrides)
    assert message in str(caught.value)


# --- validation: every problem names FILE:LINE: key ------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "what"),
    [
        ("[manager]\nbogus = 1\n", 2, "bogus", "unknown key in [manager]"),
        ("[manager]\nmax_conection = 1\n", 2, "max_conection", "did you mean 'max_connections'?"),
        ("[manager]\nconnection_spec = 10025\n", 2, "connection_spec", "expected a string"),
        ("[manager]\n\nconnection_spec = \"inet6:1@[1.2.3.4]\"\n", 3, "connection_spec",
         "IPv4 address; use inet:"),
        ("[manager]\nconnection_spec = \"unix:rel\"\n", 2, "connection_spec", "must be absolute"),
        ("[manager]\nunix_socket_mode = 660\n", 2, "unix_socket_mode", "not a permission mode"),
        ("[manager]\nunix_socket_mode = \"rw-rw----\"\n", 2, "unix_socket_mode", "not an octal"),
        ("[manager]\nunix_socket_group = false\n", 2, "unix_socket_group", "expected a string"),
        ("[manager]\nfallback_status = \"tempfail\"\n", 2, "fallback_status",
         "unknown status 'tempfail' (expected accept, temporary-failure, reject, discard)"),
        ("[manager]\nfallback_status_at_disconnect = \"x\"\n", 2, "fallback_status_at_disconnect",
         "unknown status"),
        ("[manager]\nmax_connections = -1\n", 2, "max_connections", "-1 is less than 0"),
        ("[manager]\nmax_connections = 1.5\n", 2, "max_connections", "expected an integer"),
        ("[manager]\nchunk_size = 70000\n", 2, "chunk_size", "more than 65535"),
        ("[manager]\nmax_packet_size = 0\n", 2, "max_packet_size", "less than 1"),
        ("[manager]\nbody_memory_limit = true\n", 2, "body_memory_limit", "expected an integer"),
        ("[manager]\nshutdown_timeout = -1\n", 2, "shutdown_timeout", "negative"),
        ("[manager]\nshutdown_timeout = nan\n", 2, "shutdown_timeout", "not a finite"),
        ("manager = 1\n", 1, "manager", "must be a table"),
        ("\n[milter]\nname = \"a\"\n", 2, "milter", "must be an array of tables"),
        ("[milters]\n", 1, "milters", "unknown table"),
        ("[[milter]]\nconnection_spec = \"inet:1\"\n", 1, "name", "missing"),
        ("[[milter]]\nname = \"\"\n", 2, "name", "must not be empty"),
        ("[[milter]]\nname = \"new\"\nenabled = true\n", 2, "connection_spec",
         "missing: milter 'new' is not a detected milter"),
        ("[[milter]]\nname = \"a\"\nconnection_spec = \"inet:x\"\n", 3, "connection_spec",
         "port 'x' is not a number"),
        ("[[milter]]\nname = \"opendkim\"\nenabled = \"yes\"\n", 3, "enabled",
         "expected true or false"),
        ("[[milter]]\nname = \"opendkim\"\nevaluation_mode = 1\n", 3, "evaluation_mode",
         "expected true or false"),
        ("[[milter]]\nname = \"opendkim\"\ndescription = []\n", 3, "description",
         "expected a string"),
        ("[[milter]]\nname = \"opendkim\"\nfallback_status = \"pass\"\n", 3, "fallback_status",
         "unknown status 'pass'"),
        ("[[milter]]\nname = \"opendkim\"\napplicable_conditions = \"S25R\"\n", 3,
         "applicable_conditions", "expected an array of strings"),
        ("[[milter]]\nname = \"opendkim\"\napplicable_conditions = [1]\n", 3,
         "applicable_conditions", "non-empty strings"),
        ("[[milter]]\nname = \"opendkim\"\nconnection_timeout = -5\n", 3, "connection_timeout",
         "-5 is negative"),
        ("[[milter]]\nname = \"opendkim\"\nwriting_timeout = -0.5\n", 3, "writing_timeout",
         "negative"),
        ("[[milter]]\nname = \"opendkim\"\nreading_timeout = \"7\"\n", 3, "reading_timeout",
         "expected a number of seconds"),
        ("[[milter]]\nname = \"opendkim\"\nend_of_message_timeout = -1\n", 3,
         "end_of_message_timeout", "negative"),
        ("[[milter]]\nname = \"opendkim\"\ncomand = \"x\"\n", 3, "comand",
         "unknown key in [[milter]]"),
        ("[[milter]]\nname = \"opendkim\"\n\n[[milter]]\nname = \"opendkim\"\n", 5, "name",
         "milter 'opendkim' is defined twice in this file (first at line 2)"),
        ("conditions = 3\n", 1, "conditions", "must be a table"),
        ("[manager]\nmax_connections = \n", 2, "(syntax)", "Invalid value"),
    ],
)
def test_validation_error_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, what: str
) -> None:
    found = problems(tmp_path, {"milter-manager.toml": text}, (OPENDKIM,))
    path = tmp_path / "milter-manager.toml"
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line}: {key}: "), found[0]
    assert what in found[0]


def test_errors_in_drop_ins_name_the_drop_in(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "milter-manager.toml": "[manager]\nmax_connections = 1\n",
        "milter-manager.d/90-local.toml": "[manager]\n\nchunk_size = 0\n",
    })
    assert found == [f"{tmp_path / 'milter-manager.d/90-local.toml'}:3: chunk_size: "
                     "0 is less than 1"]


def test_all_problems_are_reported_and_good_values_still_load(tmp_path: Path) -> None:
    write(tmp_path, {"milter-manager.toml": '[manager]\nmax_connections = -1\n'
                                            'fallback_status = "reject"\nchunk_size = "big"\n'})
    with pytest.raises(ConfigError) as caught:
        load_configuration(tmp_path)
    assert [p.split(": ")[1] for p in caught.value.problems] == ["max_connections", "chunk_size"]
    partial = caught.value.configuration
    assert partial is not None
    assert partial.manager.fallback_status is Status.REJECT
    assert partial.manager.max_connections == 0


def test_same_name_in_two_files_is_not_a_duplicate(tmp_path: Path) -> None:
    config = load(tmp_path, {
        "milter-manager.toml": '[[milter]]\nname = "a"\nconnection_spec = "inet:1"\n',
        "milter-manager.d/x.toml": '[[milter]]\nname = "a"\nconnection_spec = "inet:2"\n',
    })
    assert [m.connection_spec for m in config.milters] == ["inet:2"]


def test_bad_detected_spec_disables_that_child_and_is_reported(tmp_path: Path) -> None:
    broken = DetectedMilter(name="odd", connection_spec="/var/run/odd.sock", enabled=True,
                            unit="odd.service", origin="detected: odd.service, /etc/odd.conf")
    with pytest.raises(ConfigError) as caught:
        load_configuration(tmp_path, (broken, OPENDKIM))
    assert caught.value.problems == [
        "detected: odd.service, /etc/odd.conf: connection_spec: '/var/run/odd.sock' has no "
        "'TYPE:' prefix; expected unix:/PATH, local:/PATH, inet:PORT, inet:PORT@HOST, "
        "inet:PORT@[ADDRESS], inet6:PORT, inet6:PORT@HOST or inet6:PORT@[ADDRESS] "
        "(milter 'odd' disabled; set connection_spec for it in a [[milter]] table)"
    ]
    partial = caught.value.configuration
    assert partial is not None
    assert [m.name for m in partial.enabled_milters()] == ["opendkim"]


def test_file_can_fix_a_bad_detected_spec(tmp_path: Path) -> None:
    broken = DetectedMilter(name="odd", connection_spec="/var/run/odd.sock", enabled=True,
                            unit="odd.service", origin="detected: odd.service, /etc/odd.conf")
    config = load(tmp_path, {"milter-manager.toml":
                             '[[milter]]\nname = "odd"\nconnection_spec = "unix:/run/odd.sock"\n'},
                  (broken,))
    assert config.milters[0].enabled is True


def test_condition_origin_for_dotted_key_paths(tmp_path: Path) -> None:
    config = load(tmp_path, {"milter-manager.toml":
                             '[[conditions.custom]]\nname = "a"\n[[conditions.custom]]\n'
                             'name = "b"\nstages = ["connect"]\n'})
    main = tmp_path / "milter-manager.toml"
    assert config.condition_origin_for("conditions.custom[1].name").text == f"{main}:4"
    assert config.condition_origin_for("conditions.custom[1].stages[0]").text == f"{main}:5"
    assert config.condition_origin_for("conditions.custom[0]").text == f"{main}:1"
    assert config.condition_origin_for("custom[0].name").text == f"{main}:2"
