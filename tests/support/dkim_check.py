"""Check a DKIM signature (rsa-sha256, simple/simple) offline, against the test's own key.

A signature that verifies proves every signed header and the body reached the
mailbox byte for byte as opendkim saw them, e.g. through mmd's leading-space
handling of header values. The RSA check runs in ``openssl`` (always installed
with Debian's base system), so no Python crypto package is needed.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import tempfile
from pathlib import Path


class DkimError(AssertionError):
    """The signature does not verify; the message says which part failed."""


def _header_fields(head: bytes) -> list[bytes]:
    """Raw header fields, each with its folded lines and CRLFs."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return [field + b"\r\n" for field in fields]


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _tags(field: bytes) -> dict[str, str]:
    value = field.split(b":", 1)[1].decode()
    tags = {}
    for part in value.split(";"):
        if "=" in part:
            key, _, text = part.partition("=")
            tags[key.strip()] = re.sub(r"\s+", "", text)
    return tags


def public_key_pem(txt_record: Path) -> str:
    """PEM of the ``p=`` key in opendkim-genkey's SELECTOR.txt."""
    text = "".join(re.findall(r'"([^"]*)"', txt_record.read_text()))
    found = re.search(r"p=([A-Za-z0-9+/=]+)", text)
    if found is None:
        raise DkimError(f"no p= in {txt_record}")
    key = found.group(1)
    lines = [key[i:i + 64] for i in range(0, len(key), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def verify(raw: bytes, txt_record: Path) -> dict[str, str]:
    """Verify the first DKIM-Signature of ``raw`` (LF or CRLF line ends); returns its tags."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    fields = _header_fields(head + b"\r\n")
    signatures = [f for f in fields if _name(f) == b"dkim-signature"]
    if not signatures:
        raise DkimError("no DKIM-Signature header")
    signature = signatures[0]
    tags = _tags(signature)
    if tags.get("a") != "rsa-sha256" or tags.get("c", "simple/simple") != "simple/simple":
        raise DkimError(f"unsupported a= or c=: {tags}")
    # body: simple canonicalization drops trailing empty lines
    canonical_body = body.rstrip(b"\r\n") + b"\r\n" if body.strip(b"\r\n") else b"\r\n"
    body_hash = base64.b64encode(hashlib.sha256(canonical_body).digest()).decode()
    if body_hash != tags["bh"]:
        raise DkimError(f"body hash {body_hash} != bh={tags['bh']}")
    # headers: each h= name takes the last not yet used field of that name
    pool = [f for f in fields if f is not signature]
    signed = b""
    for name in tags["h"].split(":"):
        matches = [f for f in pool if _name(f) == name.strip().lower().encode()]
        if matches:
            signed += matches[-1]
            pool.remove(matches[-1])
    # b= emptied (bh= kept: the tag must start the field or follow ';' or white space)
    unsigned_self = re.sub(rb"(^|[;\s])b=[^;]*", lambda m: m.group(1) + b"b=", signature)
    signed += unsigned_self.rstrip(b"\r\n")
    with tempfile.TemporaryDirectory() as folder:
        key = Path(folder) / "key.pem"
        key.write_text(public_key_pem(txt_record))
        (Path(folder) / "sig").write_bytes(base64.b64decode(tags["b"]))
        (Path(folder) / "data").write_bytes(signed)
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", str(key), "-signature",
             str(Path(folder) / "sig"), str(Path(folder) / "data")],
            capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DkimError(f"RSA signature does not verify: {done.stdout}{done.stderr}\n"
                        f"signed data:\n{signed.decode(errors='replace')}")
    return tags
