"""The install secrets: per-machine seed tokens, per-machine password hashes, the cluster's k3s token.

Password hashing: SHA-512 crypt (``$6$``), the format every Ubuntu shadow file accepts. Python 3.11's ``crypt``
module is deprecated (it warns on import, and it is gone in 3.13); ``crypt-r`` ships no wheels, so the image's
build stage would need a C compiler and libxcrypt headers; ``bcrypt`` (``$2b$``) is not accepted by every PAM/shadow
setup. ``libpass`` (the maintained fork of passlib) implements SHA-512 crypt in pure Python, needs nothing from the
OS and never touches the ``crypt`` module. The tests check its output against ``openssl passwd -6``.

Rounds: the shadow default of 5000. The password is 32 random bytes nobody ever types (login is by SSH key only),
so key stretching adds no protection, while passlib's 656000 rounds would cost ~0.5 s per machine on every
(re)install in pure Python.
"""

from __future__ import annotations

import hmac
import secrets

from passlib.hash import sha512_crypt

SHA512_ROUNDS = 5000


def new_seed_token() -> str:
    """The secret part of a machine's seed URL (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def new_k3s_token() -> str:
    """The cluster's shared join token (k3s accepts any string; hex keeps it shell- and YAML-safe)."""
    return secrets.token_hex(32)


def hash_password(password: str) -> str:
    """SHA-512 crypt of ``password`` with a random salt."""
    return str(sha512_crypt.using(rounds=SHA512_ROUNDS).hash(password))


def new_password_hash() -> str:
    """The hash of a fresh random password that is thrown away at once: only the hash is ever stored or served."""
    return hash_password(secrets.token_urlsafe(32))


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a token was right."""
    return hmac.compare_digest(given.encode(), expected.encode())
