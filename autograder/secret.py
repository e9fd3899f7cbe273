"""The instructor's key, and each student's hidden-case draw derived from it.

The exercise generators are public (every student has the package), so the hidden cases cannot be
secret by their code. They are secret by a key: 32 random bytes, created on first use in the grading
folder (``<out>/hidden_cases.key``, mode 0600), or read from the file named by ``AUTOGRADER_KEY_FILE``
when several grading folders (or a re-created one) must draw the same cases. The key never enters the
repository, the release or a sandbox: the grading folder is outside every sandbox's view, and only
the integer draw travels with a unit of work.

A draw is ``HMAC-SHA256(key, student, exercise, SHA-256 of the answer)``: different for every
student and exercise, unknowable without the key, the same when the same answer is graded again (a
rerun reproduces its grades), and new when the answer changes, so the numbers that a failure message
quotes for one draw say nothing about the inputs of the next submission.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "hidden_cases.key"
KEY_ENV = "AUTOGRADER_KEY_FILE"
KEY_BYTES = 32


class KeyFileError(Exception):
    """The key file exists but cannot be used."""


def key_path(out: Path) -> Path:
    """Where the key is read: ``$AUTOGRADER_KEY_FILE`` if set, else ``<out>/hidden_cases.key``."""
    env = os.environ.get(KEY_ENV, "")
    return Path(env).expanduser() if env else Path(out) / KEY_FILE


def load_or_create_key(out: Path) -> bytes:
    """The instructor's key, created (0600, atomically) when it does not exist yet."""
    path = key_path(out)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.hex().encode() + b"\n")
        try:
            os.link(tmp, path)                 # fails if another grader created it meanwhile: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{path} is not a hidden-case key (64 hexadecimal digits expected)") from None
    if len(key) < 16:
        raise KeyFileError(f"{path} holds {len(key)} bytes; a hidden-case key has at least 16")
    return key


def fingerprint(key: bytes) -> str:
    """A short public digest of the key: cached results drawn with another key are not reused."""
    return hmac.new(key, b"fingerprint", hashlib.sha256).hexdigest()[:16]


def draw_for(key: bytes, student: str, exercise: str, answer: str) -> int:
    """The draw of ``student``'s hidden cases for ``exercise`` when their answer cell is ``answer``."""
    message = b"\0".join([b"secondorder-hidden-v1", student.encode(), exercise.encode(),
                          hashlib.sha256(answer.encode()).digest()])
    return int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "little") >> 2
