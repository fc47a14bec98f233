"""Generated material checked by the real tools: ssh-keygen reads the keys, Apache's htpasswd verifies the entries;
hypothesis checks lengths, alphabets and character classes over the whole range of settings."""

from __future__ import annotations

import base64
import binascii
import math
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secrets_helpers import MITTWALD, OURS

from homelab_secrets.generate import generate, htpasswd_line, random_string
from homelab_secrets.spec import CLASSES, ENCODINGS, parse

ALPHABETS = {
    "base64": set(string.ascii_letters + string.digits + "+/"),
    "base64url": set(string.ascii_letters + string.digits + "-_"),
    "base32": set(string.ascii_uppercase + "234567"),
    "hex": set("0123456789abcdef"),
}


@pytest.mark.parametrize(("algorithm", "bits", "label"), [("ed25519", None, "ED25519"), ("rsa", "3072", "RSA")])
def test_ssh_keypair_is_read_by_ssh_keygen(tmp_path: Path, algorithm: str, bits: str | None, label: str) -> None:
    notes = {MITTWALD + "type": "ssh-keypair", OURS + "key-algorithm": algorithm}
    if bits:
        notes[OURS + "key-bits"] = bits
    pair = generate(parse(notes), ("ssh-privatekey", "ssh-publickey"), comment="apps/deploy-key")
    private = tmp_path / "id"
    private.write_bytes(pair["ssh-privatekey"])
    private.chmod(0o600)
    (tmp_path / "id.pub").write_bytes(pair["ssh-publickey"])
    of_public = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "id.pub")], capture_output=True, text=True)
    assert of_public.returncode == 0, of_public.stderr
    assert of_public.stdout.split()[0] == (bits or "256")
    assert of_public.stdout.rstrip().endswith(f"apps/deploy-key ({label})")
    # the private key is an OpenSSH key whose public half is the one published
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], capture_output=True, text=True)
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.split()[:2] == pair["ssh-publickey"].decode().split()[:2]


def test_mittwalds_ssh_keypair_default_is_rsa_2048(tmp_path: Path) -> None:
    pair = generate(parse({MITTWALD + "type": "ssh-keypair"}), ())
    (tmp_path / "k.pub").write_bytes(pair["ssh-publickey"])
    result = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True)
    assert result.stdout.split()[0] == "2048"
    assert "(RSA)" in result.stdout


def test_basic_auth_entry_verifies_with_apache_htpasswd(tmp_path: Path) -> None:
    spec = parse({MITTWALD + "type": "basic-auth", MITTWALD + "basic-auth-username": "registry"})
    values = generate(spec, spec.keys)
    assert values["username"] == b"registry"
    (tmp_path / "htpasswd").write_bytes(values["auth"] + b"\n")
    password = values["password"].decode()
    ok = subprocess.run(["htpasswd", "-vb", str(tmp_path / "htpasswd"), "registry", password], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    wrong = subprocess.run(["htpasswd", "-vb", str(tmp_path / "htpasswd"), "registry", password + "x"])
    assert wrong.returncode != 0
    assert values["auth"].startswith(b"registry:$2y$")  # bcrypt: the scheme the registry and traefik accept


def test_htpasswd_line_of_a_password_with_symbols(tmp_path: Path) -> None:
    password = "p:ss w0rd!#%"
    (tmp_path / "f").write_bytes(htpasswd_line("admin", password.encode()) + b"\n")
    assert (
        subprocess.run(["htpasswd", "-vb", str(tmp_path / "f"), "admin", password], capture_output=True).returncode == 0
    )


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 200), encoding=st.sampled_from([e for e in ENCODINGS if e != "raw"]))
def test_character_lengths_use_only_the_encodings_alphabet(length: int, encoding: str) -> None:
    spec = parse({MITTWALD + "autogenerate": "a", MITTWALD + "length": str(length), MITTWALD + "encoding": encoding})
    value = random_string(spec).decode()
    assert len(value) == length
    assert set(value) <= ALPHABETS[encoding]


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 128), encoding=st.sampled_from(ENCODINGS))
def test_a_B_length_is_that_many_random_bytes_encoded(length: int, encoding: str) -> None:
    spec = parse({MITTWALD + "autogenerate": "a", MITTWALD + "length": f"{length}B", MITTWALD + "encoding": encoding})
    value = random_string(spec)
    decoded = {
        "base64": lambda v: base64.b64decode(v, validate=True),
        "base64url": base64.urlsafe_b64decode,
        "base32": base64.b32decode,
        "hex": binascii.unhexlify,
        "raw": lambda v: v,
    }[encoding](value)
    assert len(decoded) == length


@settings(max_examples=80, deadline=None)
@given(
    classes=st.lists(st.sampled_from(sorted(CLASSES)), min_size=1, max_size=4, unique=True),
    length=st.integers(1, 64),
)
def test_character_classes_are_respected_and_each_appears(classes: list[str], length: int) -> None:
    spec = parse({OURS + "generate": "a", OURS + "charset": ",".join(classes), OURS + "length": str(length)})
    value = random_string(spec).decode()
    assert len(value) == length
    allowed = set("".join(CLASSES[c] for c in classes))
    assert set(value) <= allowed
    if length >= len(classes):
        assert all(any(ch in CLASSES[c] for ch in value) for c in classes)


def test_values_carry_the_entropy_their_length_promises() -> None:
    """Over many draws every symbol of the alphabet appears about equally often, and no value repeats."""
    spec = parse({OURS + "generate": "a", OURS + "charset": "lower,upper,digits", OURS + "length": "32"})
    draws = [random_string(spec).decode() for _ in range(600)]
    assert len(set(draws)) == len(draws)
    counts: dict[str, int] = {}
    for value in draws:
        for ch in value:
            counts[ch] = counts.get(ch, 0) + 1
    assert len(counts) == 62
    expected = 600 * 32 / 62
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 130  # 61 degrees of freedom: p < 1e-6 beyond this
    # Shannon entropy per character close to log2(62) ≈ 5.95 bits
    total = sum(counts.values())
    entropy = -sum(c / total * math.log2(c / total) for c in counts.values())
    assert entropy > 5.9


def test_symbols_can_be_chosen() -> None:
    spec = parse({OURS + "generate": "a", OURS + "charset": "symbols", OURS + "symbols": "!@", OURS + "length": "30"})
    assert set(random_string(spec).decode()) <= {"!", "@"}
