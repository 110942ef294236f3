"""Finding a secret in whatever a run left behind: files, database bytes, S3 objects,
captured text; as is and in the encodings it could be stored in.

A secret here is a fixed prefix and a random hex core (`canary`), so a match cannot be
a coincidence, and a miss cannot come from a form the encodings below do not produce:
the core is plain ASCII that JSON, URL-encoding and ``repr`` leave unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

PREFIX = "lgx-canary-"
WINDOW = 12  # hex characters of the core: a part this long is still a leak


def canary() -> str:
    """A fresh recognisable secret: ``lgx-canary-`` and 32 random hex characters."""
    return PREFIX + secrets.token_hex(16)


def _base64_cores(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The part of base64 (standard and URL-safe) that any text containing `data`
    shows whatever its alignment: the three shifts, their partial groups cut off."""
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data)
        middle = encoded[4:-4] if shift else encoded[:-4]
        yield f"base64+{shift}", middle
        yield f"base64url+{shift}", middle.replace(b"+", b"-").replace(b"/", b"_")


def encodings(secret: str) -> dict[str, bytes]:
    """Every form of `secret` to look for, by name."""
    raw = secret.encode()
    core = secret.removeprefix(PREFIX).encode()
    forms: dict[str, bytes] = {
        "raw": raw,
        "bytes-repr": repr(raw).encode(),
        "json": json.dumps(secret).encode(),
        "url-encoded": quote(secret, safe="").encode(),
        "utf-16-le": secret.encode("utf-16-le"),
        "hex": binascii.hexlify(raw),
        "hex-upper": binascii.hexlify(raw).upper(),
    }
    forms.update(_base64_cores(raw))
    # Any 12-character part of the random core: a truncated or partly masked key.
    for start in range(0, len(core) - WINDOW + 1):
        forms[f"part@{start}"] = core[start : start + WINDOW]
    return forms


def find(secret: str, data: bytes) -> list[str]:
    """The names of the forms of `secret` that `data` contains (case-insensitive for the
    hex parts, since a hex core may be upper-cased on the way)."""
    lowered = data.lower()
    found = []
    for name, form in encodings(secret).items():
        haystack = lowered if name.startswith("part@") else data
        if form in haystack:
            found.append(name)
    return found


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (path for path in sorted(root.rglob("*")) if path.is_file())


def scan_files(secret: str, roots: Iterable[Path]) -> dict[str, list[str]]:
    """``{path: forms found}`` for every file under `roots` holding `secret`."""
    hits = {}
    for path in files_under(*roots):
        found = find(secret, path.read_bytes())
        if found:
            hits[str(path)] = found
    return hits


def scan_blobs(secret: str, blobs: dict[str, bytes]) -> dict[str, list[str]]:
    """``{name: forms found}`` for every named blob holding `secret`."""
    return {name: found for name, data in blobs.items() if (found := find(secret, data))}
