"""Password hashes for users in the configuration (SMTP AUTH, MQTT), standard library only.

Formats (Django's, so hashes can be copied from a Django project's user table):

* ``scrypt$<n>$<salt>$<r>$<p>$<base64 key>`` (:func:`hashlib.scrypt`, RFC 7914; the default,
  n=2**14, r=8, p=1, a 64-byte key);
* ``pbkdf2_sha256$<iterations>$<salt>$<base64 key>`` (:func:`hashlib.pbkdf2_hmac`, RFC 8018;
  600,000 iterations by default, OWASP 2023).

Make one with::

    gateway hash-password                     # prompts twice, prints the hash
    echo -n 'secret' | gateway hash-password --stdin [--pbkdf2]

Checking takes tens of milliseconds on purpose: listeners run it in a worker thread.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys
from collections.abc import Sequence

__all__ = ["DUMMY_HASH", "check_password_hash", "hash_password", "main", "verify_password"]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _KEY = 2**14, 8, 1, 64
_PBKDF2_ITERATIONS = 600_000
_MAXMEM = 256 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, algorithm: str = "scrypt", *, iterations: int = _PBKDF2_ITERATIONS) -> str:
    """Hash ``password`` with a fresh random salt.

    Args:
        password: the password.
        algorithm: ``scrypt`` (memory-hard, the default) or ``pbkdf2_sha256``.
        iterations: PBKDF2 iterations (each check costs that much CPU).
    """
    salt = secrets.token_urlsafe(16)
    raw = password.encode("utf-8")
    if algorithm == "scrypt":
        key = hashlib.scrypt(raw, salt=salt.encode(), n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_MAXMEM, dklen=_KEY)
        return f"scrypt${_SCRYPT_N}${salt}${_SCRYPT_R}${_SCRYPT_P}${_b64(key)}"
    if algorithm == "pbkdf2_sha256":
        key = hashlib.pbkdf2_hmac("sha256", raw, salt.encode(), iterations)
        return f"pbkdf2_sha256${iterations}${salt}${_b64(key)}"
    raise ValueError(f"unknown algorithm {algorithm!r}; use scrypt or pbkdf2_sha256")


def check_password_hash(encoded: str) -> None:
    """Raise ``ValueError`` unless ``encoded`` is a well-formed hash of a supported format."""
    parts = encoded.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[3]), int(parts[4])
            if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * n > _MAXMEM:
                raise ValueError
            base64.b64decode(parts[5], validate=True)
            return
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            if int(parts[1]) < 1:
                raise ValueError
            base64.b64decode(parts[3], validate=True)
            return
    except ValueError:
        pass
    raise ValueError(
        "not a password hash; expected scrypt$... or pbkdf2_sha256$... "
        "(make one with: gateway hash-password)"
    )


def verify_password(password: str | bytes, encoded: str) -> bool:
    """True if ``password`` matches the hash ``encoded`` (constant-time comparison).

    A malformed hash never matches.
    """
    parts = encoded.split("$")
    raw = password.encode("utf-8") if isinstance(password, str) else password
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            expected = base64.b64decode(parts[5], validate=True)
            key = hashlib.scrypt(raw, salt=parts[2].encode(), n=int(parts[1]), r=int(parts[3]), p=int(parts[4]),
                                 maxmem=_MAXMEM, dklen=len(expected))
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            expected = base64.b64decode(parts[3], validate=True)
            key = hashlib.pbkdf2_hmac("sha256", raw, parts[2].encode(), int(parts[1]), dklen=len(expected))
        else:
            return False
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(key, expected)


#: Checked when a user is unknown, so the time taken does not tell which usernames exist.
DUMMY_HASH = "scrypt$16384$timing-equaliser$8$1$" + _b64(bytes(_KEY))


def main(argv: Sequence[str] | None = None, prog: str = "gateway hash-password") -> int:
    """Command line: print the hash of a password read from the terminal or stdin.

    Without ``--stdin`` the password is asked twice on the terminal; with no terminal (a pipe,
    a script) the command says to use ``--stdin`` and exits 2.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Hash a password for the users of an SMTP or MQTT listener.",
    )
    parser.add_argument("--stdin", action="store_true", help="read the password from standard input")
    parser.add_argument("--pbkdf2", action="store_true", help="use pbkdf2_sha256 instead of scrypt")
    args = parser.parse_args(argv)
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            print(f"{prog}: standard input is not a terminal: to read the password from it, use --stdin "
                  f"(echo \"$PASSWORD\" | {prog} --stdin)", file=sys.stderr)
            return 2
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Again: ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 1
        if again != password:
            print(f"{prog}: the passwords differ", file=sys.stderr)
            return 1
    if not password:
        print(f"{prog}: the password is empty", file=sys.stderr)
        return 1
    print(hash_password(password, "pbkdf2_sha256" if args.pbkdf2 else "scrypt"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
