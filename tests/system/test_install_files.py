"""scripts/install-files with a staging DESTDIR, as a distribution package build runs it."""

from __future__ import annotations

import marshal
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    destdir = tmp_path_factory.mktemp("destdir")
    subprocess.run([str(ROOT / "scripts" / "install-files"), str(destdir), "/usr"], check=True,
                   capture_output=True, timeout=600)
    return destdir


def test_layout(staged: Path) -> None:
    expected = [
        "usr/sbin/milter-manager",
        "usr/bin/milter-test-server",
        "usr/lib/milter-manager/bin/python3",
        "usr/lib/systemd/system/milter-manager.service",
        "usr/lib/systemd/system/milter-manager.socket",
        "usr/lib/sysusers.d/milter-manager.conf",
        "usr/lib/tmpfiles.d/milter-manager.conf",
        "usr/share/doc/milter-manager/examples/milter-manager.socket.d/postfix-chroot.conf",
        "usr/share/doc/milter-manager/systemd.md",
    ]
    missing = [path for path in expected if not (staged / path).exists()]
    assert missing == []
    assert (staged / "usr/sbin/milter-manager").read_text().startswith(
        "#!/usr/lib/milter-manager/bin/python3 -I\n"
    )


def test_no_staging_path_is_left_in_the_tree(staged: Path) -> None:
    leaks = subprocess.run(["grep", "-r", "-l", "-F", str(staged), str(staged)],
                           capture_output=True, text=True)
    assert leaks.stdout == ""


def test_bytecode_names_the_final_paths(staged: Path) -> None:
    site = next((staged / "usr/lib/milter-manager/lib").glob("python3*/site-packages"))
    compiled = site / "mmd" / "adapters" / "__pycache__" / "notify.cpython-311.pyc"
    with compiled.open("rb") as stream:
        stream.read(16)
        code = marshal.load(stream)
    relative = compiled.parent.parent.relative_to(staged) / "notify.py"
    assert code.co_filename == f"/{relative}"


def test_installed_environment_imports_everything(staged: Path) -> None:
    python = staged / "usr/lib/milter-manager/bin/python3"
    result = subprocess.run(
        [str(python), "-I", "-c",
         "import mmd.adapters.activation, mmd.adapters.notify, mmd.adapters.journal, pystemd,"
         " dbus_next, cysystemd, sdnotify; print('ok')"],
        capture_output=True, text=True, check=True,
    )
    assert result.stdout == "ok\n"
