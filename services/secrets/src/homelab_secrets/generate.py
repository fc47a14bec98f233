"""Random values for a :class:`~homelab_secrets.spec.Spec`: strings, SSH key pairs, htpasswd entries.

Every byte comes from :mod:`secrets` (the OS CSPRNG) or :mod:`cryptography`; nothing is derived from a seed.
"""

from __future__ import annotations

import base64
import secrets

import bcrypt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from homelab_secrets.spec import CLASSES, Spec


def _encode(raw: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.b64encode(raw)
    if encoding == "base64url":
        return base64.urlsafe_b64encode(raw)
    if encoding == "base32":
        return base64.b32encode(raw)
    if encoding == "hex":
        return raw.hex().encode()
    return raw  # raw


def random_string(spec: Spec) -> bytes:
    """mittwald's string: ``length`` characters of the encoding's alphabet, or ``length`` bytes encoded (``B``).

    With our ``charset`` instead: ``length`` characters drawn uniformly from the classes, with at least one of each
    class when the length allows (the usual password-policy check).
    """
    if spec.charset:
        return _from_classes(spec).encode()
    if spec.length_in_bytes:
        return _encode(secrets.token_bytes(spec.length), spec.encoding)
    if spec.encoding == "raw":
        return secrets.token_bytes(spec.length)
    # Enough random bytes that the encoded text, without padding, has at least `length` characters.
    encoded = _encode(secrets.token_bytes(spec.length), spec.encoding).rstrip(b"=")
    return encoded[: spec.length]


def _from_classes(spec: Spec) -> str:
    pools = [spec.symbols if c == "symbols" else CLASSES[c] for c in spec.charset]
    alphabet = "".join(pools)
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(spec.length))
        # Rejection keeps the distribution uniform over the values that satisfy the policy.
        if spec.length < len(pools) or all(any(ch in pool for ch in value) for pool in pools):
            return value


def htpasswd_line(username: str, password: bytes) -> bytes:
    """``user:$2y$...``: a bcrypt htpasswd entry (Apache's htpasswd, nginx, traefik and the registry read it)."""
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=10))
    return username.encode() + b":" + hashed.replace(b"$2b$", b"$2y$", 1)


def ssh_keypair(spec: Spec, comment: str) -> dict[str, bytes]:
    """An OpenSSH private key and its ``authorized_keys`` line (ed25519, or RSA of ``key_bits``)."""
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if spec.key_algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=spec.key_bits)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {"ssh-privatekey": private, "ssh-publickey": public + b" " + comment.encode() + b"\n"}


def generate(spec: Spec, keys: tuple[str, ...], comment: str = "homelab-secrets") -> dict[str, bytes]:
    """New values for ``keys`` (a subset of what the spec writes; a type's keys come as a whole)."""
    if spec.type == "ssh-keypair":
        return ssh_keypair(spec, comment)
    if spec.type == "basic-auth":
        password = random_string(spec)
        return {
            "username": spec.username.encode(),
            "password": password,
            "auth": htpasswd_line(spec.username, password),
        }
    return {key: random_string(spec) for key in keys}
