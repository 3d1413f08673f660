from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docblocks import runnable, script, shell_blocks

GUIDE = """\
# Guide

```sh run
apt-get install -y postfix
```

Read only:

```sh
rm -rf /
```

~~~bash run=chroot
postconf -e 'a = b'
~~~

```toml
[manager]
```
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(text)
    return path


def test_blocks_keep_order_tags_and_lines(tmp_path: Path) -> None:
    blocks = shell_blocks(write(tmp_path, GUIDE))
    assert [b.line for b in blocks] == [3, 9, 13]
    assert [b.tags for b in blocks] == [{"run": ""}, {}, {"run": "chroot"}]
    assert blocks[2].text == "postconf -e 'a = b'\n"


def test_only_tagged_blocks_run(tmp_path: Path) -> None:
    path = write(tmp_path, GUIDE)
    assert [b.line for b in runnable(path)] == [3, 13]
    assert [b.line for b in runnable(path, value="chroot")] == [13]
    text = script(path)
    assert text.startswith("set -eux\n") and "rm -rf" not in text
    assert text.index("apt-get") < text.index("postconf")


def test_missing_tag_and_open_fence_are_errors(tmp_path: Path) -> None:
    with pytest.raises(LookupError):
        runnable(write(tmp_path, "```sh\nls\n```\n"))
    with pytest.raises(ValueError, match="never closed"):
        shell_blocks(write(tmp_path, "```sh run\nls\n"))
