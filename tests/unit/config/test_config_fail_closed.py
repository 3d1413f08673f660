"""Configuration that would silently drop settings is an error (issue 13, defect 3).

A main file that is a folder or a symbolic link to nothing, a drop-in folder the daemon's
user may not list, a drop-in that is not a file, and a zero time-out used to load as
"nothing there" or as a valid value; the daemon then ran with defaults.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mmd.config.loader import ConfigError, load_configuration
from tests.support.users import effective_user

TIMEOUT_KEYS = [
    ("manager", "shutdown_timeout"),
    ("milter", "connection_timeout"),
    ("milter", "writing_timeout"),
    ("milter", "reading_timeout"),
    ("milter", "end_of_message_timeout"),
]


def problems_of(config_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_configuration(config_dir)
    return raised.value.problems


@pytest.mark.parametrize(("table", "key"), TIMEOUT_KEYS)
@pytest.mark.parametrize("value", ["0", "0.0", "-1"])
def test_zero_or_negative_timeouts_are_refused(
    tmp_path: Path, table: str, key: str, value: str
) -> None:
    if table == "manager":
        text = f"[manager]\n{key} = {value}\n"
        line = 2
    else:
        text = f'[[milter]]\nname = "a"\nconnection_spec = "inet:1@127.0.0.1"\n{key} = {value}\n'
        line = 4
    (tmp_path / "milter-manager.toml").write_text(text)
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path / 'milter-manager.toml'}:{line}: {key}: "), problem
    assert "must be more than 0 seconds" in problem


def test_a_small_positive_timeout_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "milter-manager.toml").write_text(
        '[[milter]]\nname = "a"\nconnection_spec = "inet:1@127.0.0.1"\nreading_timeout = 0.5\n'
    )
    assert load_configuration(tmp_path).milters[0].reading_timeout == 0.5


def test_main_file_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "milter-manager.toml").mkdir()
    assert problems_of(tmp_path) == [
        f"{tmp_path / 'milter-manager.toml'}: a folder, expected a file"
    ]


def test_main_file_that_is_a_dangling_symlink_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "milter-manager.toml").symlink_to("/etc/milter-manager/gone.toml")
    assert problems_of(tmp_path) == [
        f"{tmp_path / 'milter-manager.toml'}: a symbolic link to "
        "'/etc/milter-manager/gone.toml', which does not exist; expected a file"
    ]


def test_main_file_through_a_symlink_still_loads(tmp_path: Path) -> None:
    (tmp_path / "real.toml").write_text("[manager]\nchunk_size = 4096\n")
    (tmp_path / "milter-manager.toml").symlink_to(tmp_path / "real.toml")
    assert load_configuration(tmp_path).manager.chunk_size == 4096


def test_drop_in_that_is_not_a_file_is_an_error(tmp_path: Path) -> None:
    drop_ins = tmp_path / "milter-manager.d"
    drop_ins.mkdir()
    (drop_ins / "10-folder.toml").mkdir()
    (drop_ins / "20-dangling.toml").symlink_to(drop_ins / "moved-away.toml")
    # an editor's lock link is hidden, and dangling by design: not a drop-in
    (drop_ins / ".#30-local.toml").symlink_to("root@host.1234:1700000000")
    (drop_ins / "40-good.toml").write_text("[manager]\nchunk_size = 4096\n")
    with pytest.raises(ConfigError) as raised:
        load_configuration(tmp_path)
    assert raised.value.problems == [
        f"{drop_ins / '10-folder.toml'}: a folder, expected a file",
        f"{drop_ins / '20-dangling.toml'}: a symbolic link to "
        f"'{drop_ins / 'moved-away.toml'}', which does not exist; expected a file",
    ]
    assert raised.value.configuration is not None
    assert raised.value.configuration.files == [str(drop_ins / "40-good.toml")]


def test_drop_in_folder_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "milter-manager.d").write_text("[manager]\n")
    assert problems_of(tmp_path) == [
        f"{tmp_path / 'milter-manager.d'}: a file, expected a folder"
    ]


def test_unreadable_drop_in_folder_is_an_error() -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        config_dir = Path(scratch)
        config_dir.chmod(0o755)
        (config_dir / "milter-manager.toml").write_text("[manager]\nchunk_size = 4096\n")
        (config_dir / "milter-manager.toml").chmod(0o644)
        drop_ins = config_dir / "milter-manager.d"
        drop_ins.mkdir(mode=0o700)  # root's: nobody may not list it
        (drop_ins / "90-local.toml").write_text('[manager]\nfallback_status = "reject"\n')
        with effective_user("nobody"):
            problems = problems_of(config_dir)
    assert problems == [f"{drop_ins}: cannot read: Permission denied"]


def test_missing_files_are_still_no_problem(tmp_path: Path) -> None:
    assert load_configuration(tmp_path).files == []
    assert load_configuration(tmp_path / "absent").files == []


def test_config_folder_that_is_a_dangling_symlink_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "absent")
    assert problems_of(tmp_path / "link") == [
        f"{tmp_path / 'link'}: a symbolic link to '{tmp_path / 'absent'}', which does not "
        "exist; expected a folder"
    ]
