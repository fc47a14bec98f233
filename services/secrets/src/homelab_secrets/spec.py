"""What a Secret's annotations ask for, read exactly: mittwald's vocabulary plus our own ``secrets.homelab.dev/`` keys.

mittwald's controller falls back to a default when it cannot read a value (an unknown type becomes a string, a
misspelt encoding base64, ``regenerate: "true"`` is taken as the name of a key). Here every value is checked and a
wrong one is a :class:`SpecError` naming the annotation, which the controller turns into a Warning Event, a metric
and the status annotation: a Secret is never filled with something its author did not ask for.

Our keys win over mittwald's when both are set (``secrets.homelab.dev/type`` over
``secret-generator.v1.mittwald.de/type``), so a Secret can move from mittwald's controller to this one by adding
keys, and back by removing them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MITTWALD = "secret-generator.v1.mittwald.de/"
OURS = "secrets.homelab.dev/"

SecretType = Literal["string", "ssh-keypair", "basic-auth"]
TYPES: tuple[SecretType, ...] = ("string", "ssh-keypair", "basic-auth")
ENCODINGS = ("base64", "base64url", "base32", "hex", "raw")
CLASSES = {
    "lower": "abcdefghijklmnopqrstuvwxyz",
    "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "symbols": "!#%+,-.:=?@^_~",
}
#: The keys a type writes, whatever the generate list says (mittwald's names).
FIXED_KEYS: dict[str, tuple[str, ...]] = {
    "ssh-keypair": ("ssh-privatekey", "ssh-publickey"),
    "basic-auth": ("auth", "username", "password"),
}
HOOKS = ("gitea", "grafana")
KEY_NAME = re.compile(r"^[-._a-zA-Z0-9]{1,200}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

DEFAULT_LENGTH = 40  # mittwald's default
MAX_LENGTH = 4096
#: The annotations mittwald defines, by our name for the same setting.
MITTWALD_NAMES = {
    "generate": "autogenerate",
    "type": "type",
    "length": "length",
    "encoding": "encoding",
    "regenerate": "regenerate",
    "username": "basic-auth-username",
}

# Written by the controller (status: never declared in git, see README "Why Argo CD sees no drift").
STATUS = OURS + "status"
GENERATED_AT = OURS + "generated-at"
ROTATED_AT = OURS + "rotated-at"
PREVIOUS_UNTIL = OURS + "previous-until"
FINGERPRINTS = OURS + "fingerprints"
PENDING_SINCE = OURS + "rotation-pending-since"
HOOK_FAILED_AT = OURS + "hook-failed-at"
REGENERATED_TOKEN = OURS + "regenerated-token"
ROTATE_REQUESTED = OURS + "rotate-requested-at"
#: On a copy (e.g. Argo CD's repository credential): the one Secret ("namespace/name") allowed to write into it.
COPY_OF = OURS + "copy-of"
#: On a workload's pod template: changes only when a Secret it reloads on was rotated (see README "Restarts").
RESTARTED_FOR = OURS + "restarted-for"
#: On a workload: the Secrets (comma list, same namespace) whose rotation restarts it; Reloader's name too.
RELOAD = (OURS + "reload", "secret.reloader.stakater.com/reload")
MITTWALD_SECURE = MITTWALD + "secure"
MITTWALD_GENERATED_AT = MITTWALD + "autogenerate-generated-at"
STATUS_KEYS = (
    STATUS,
    GENERATED_AT,
    ROTATED_AT,
    PREVIOUS_UNTIL,
    FINGERPRINTS,
    PENDING_SINCE,
    HOOK_FAILED_AT,
    REGENERATED_TOKEN,
    ROTATE_REQUESTED,
    MITTWALD_SECURE,
    MITTWALD_GENERATED_AT,
)
#: Settings read from our prefix; anything else under it that is not a status key is a typo and an error.
OUR_SETTINGS = (
    "generate",
    "type",
    "length",
    "encoding",
    "charset",
    "symbols",
    "key-algorithm",
    "key-bits",
    "username",
    "rotate-every",
    "grace",
    "regenerate",
    "managed",
    "hook",
    "hook-url",
    "hook-username-key",
    "copy-to",
    "copy-keys",
)
MITTWALD_SETTINGS = (*MITTWALD_NAMES.values(),)


class SpecError(ValueError):
    """An annotation cannot be read; the message names it and says what is accepted."""


@dataclass(frozen=True)
class Spec:
    """One Secret's request, validated."""

    keys: tuple[str, ...]
    type: SecretType = "string"
    length: int = DEFAULT_LENGTH
    length_in_bytes: bool = False
    encoding: str = "base64"
    charset: tuple[str, ...] = ()  # our character classes; empty = mittwald's encoded random bytes
    symbols: str = CLASSES["symbols"]
    key_algorithm: Literal["ed25519", "rsa"] = "rsa"
    key_bits: int = 2048
    username: str = "admin"
    rotate_every: float | None = None  # seconds
    grace: float = 3600.0  # how long <key>.previous stays after a rotation
    regenerate_all: bool = False  # mittwald's one-shot regenerate: "true"/"yes"
    regenerate_keys: tuple[str, ...] = ()  # ... or a comma list of keys
    regenerate_token: str = ""  # ours: regenerate once per new token (safe to keep in git)
    managed: bool = False
    hook: str | None = None
    hook_url: str = ""
    hook_username_key: str = "username"
    mittwald: bool = False  # read (also) from mittwald's prefix: write its status annotations back too
    copy_to: tuple[str, ...] = ()  # "namespace/name" of Secrets kept in step with this one (each must agree)
    copy_keys: tuple[str, ...] = ()  # the keys copied (default: the generated keys)

    @property
    def rotates(self) -> bool:
        return self.rotate_every is not None

    @property
    def password_key(self) -> str:
        return "password" if self.type == "basic-auth" else self.keys[0]


def is_annotated(annotations: dict[str, str]) -> bool:
    """Does this Secret ask for generated values at all (our settings, or mittwald's autogenerate/type)?"""
    if any(k.startswith(OURS) and k[len(OURS) :] in OUR_SETTINGS for k in annotations):
        return True
    return (MITTWALD + "autogenerate") in annotations or (MITTWALD + "type") in annotations


def parse_duration(value: str, name: str) -> float:
    """A Go duration of hours, minutes and seconds (``720h``, ``1h30m``, ``90s``) in seconds; more than 0."""
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        number, unit = float(match[1]), match[2]
        total += number * {"h": 3600, "m": 60, "s": 1}[unit]
        pos = match.end()
    if not text or pos != len(text) or total <= 0:
        raise SpecError(f"{name}: {value!r} is not a duration like 720h, 1h30m or 90s")
    return total


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no", ""):
        return False
    raise SpecError(f"{name}: {value!r} is not true/yes or false/no")


def _keys(value: str, name: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    for key in keys:
        if not KEY_NAME.match(key) or key.endswith((".previous", ".pending")):
            raise SpecError(f"{name}: {key!r} is not a Secret key name (letters, digits, '-', '_', '.')")
    if len(set(keys)) != len(keys):
        raise SpecError(f"{name}: {value!r} names a key twice")
    return keys


def parse(annotations: dict[str, str]) -> Spec:
    """The Secret's request from its annotations; :class:`SpecError` naming the first bad one."""
    for key in annotations:
        if key.startswith(OURS) and key not in (*STATUS_KEYS, COPY_OF) and key[len(OURS) :] not in OUR_SETTINGS:
            raise SpecError(f"{key}: unknown annotation (known: {', '.join(OURS + s for s in OUR_SETTINGS)})")

    def get(setting: str) -> tuple[str, str] | None:
        """(annotation name, value) from our prefix, else mittwald's."""
        ours = OURS + setting
        if ours in annotations:
            return ours, annotations[ours]
        theirs = MITTWALD_NAMES.get(setting)
        if theirs is not None and MITTWALD + theirs in annotations:
            return MITTWALD + theirs, annotations[MITTWALD + theirs]
        return None

    mittwald = any(k.startswith(MITTWALD) and k[len(MITTWALD) :] in MITTWALD_SETTINGS for k in annotations)
    fields: dict[str, object] = {"mittwald": mittwald}

    found = get("type")
    kind: SecretType = "string"
    if found is not None:
        name, value = found
        if value not in TYPES:
            raise SpecError(f"{name}: unknown type {value!r} (expected one of {', '.join(TYPES)})")
        kind = value
    fields["type"] = kind

    found = get("generate")
    listed = _keys(found[1], found[0]) if found else ()
    if kind == "string":
        if not listed:
            where = found[0] if found else f"{OURS}generate (or {MITTWALD}autogenerate)"
            raise SpecError(f"{where}: name the keys to generate (a comma list, e.g. password)")
        keys = listed
    else:
        keys = FIXED_KEYS[kind]
        extra = [k for k in listed if k not in keys]
        if extra:
            raise SpecError(
                f"{found[0] if found else 'generate'}: type {kind} writes exactly {', '.join(keys)}; "
                f"it cannot generate {', '.join(extra)}"
            )
    fields["keys"] = keys

    found = get("length")
    if found is not None:
        name, value = found
        match = re.fullmatch(r"(\d{1,5})(B?)", value.strip())
        if match is None:
            raise SpecError(f"{name}: {value!r} is not a length (a number of characters, or bytes with a B suffix)")
        length = int(match[1])
        if kind == "ssh-keypair":
            raise SpecError(f"{name}: type ssh-keypair takes {OURS}key-bits (RSA) or key-algorithm, not a length")
        if not 1 <= length <= MAX_LENGTH:
            raise SpecError(f"{name}: {length} is out of range (1 to {MAX_LENGTH})")
        fields["length"] = length
        fields["length_in_bytes"] = bool(match[2])

    found = get("encoding")
    if found is not None:
        name, value = found
        if value not in ENCODINGS:
            raise SpecError(f"{name}: unknown encoding {value!r} (expected one of {', '.join(ENCODINGS)})")
        fields["encoding"] = value

    found = get("charset")
    if found is not None:
        name, value = found
        classes = tuple(c.strip() for c in value.split(",") if c.strip())
        unknown = [c for c in classes if c not in CLASSES]
        if not classes or unknown:
            raise SpecError(f"{name}: {value!r}: character classes are a comma list of {', '.join(CLASSES)}")
        if get("encoding") is not None:
            raise SpecError(f"{name}: a character set and an encoding exclude each other; set one")
        if fields.get("length_in_bytes"):
            raise SpecError(f"{name}: a character set counts characters; drop the B suffix of the length")
        fields["charset"] = classes
    found = get("symbols")
    if found is not None:
        name, value = found
        if not value or any(not (33 <= ord(ch) <= 126) or ch.isalnum() for ch in value):
            raise SpecError(f"{name}: symbols must be printable ASCII punctuation")
        fields["symbols"] = "".join(dict.fromkeys(value))

    found = get("key-algorithm")
    if found is not None:
        name, value = found
        if value not in ("ed25519", "rsa"):
            raise SpecError(f"{name}: unknown key algorithm {value!r} (expected ed25519 or rsa)")
        fields["key_algorithm"] = value
    found = get("key-bits")
    if found is not None:
        name, value = found
        if value not in ("2048", "3072", "4096"):
            raise SpecError(f"{name}: {value!r}: RSA keys are 2048, 3072 or 4096 bits")
        fields["key_bits"] = int(value)

    found = get("username")
    if found is not None:
        name, value = found
        if not value or ":" in value or any(ch.isspace() for ch in value):
            raise SpecError(f"{name}: {value!r} cannot be an htpasswd user name (no ':' or spaces)")
        fields["username"] = value

    found = get("rotate-every")
    period = None
    if found is not None:
        period = parse_duration(found[1], found[0])
        fields["rotate_every"] = period
        fields["grace"] = min(24 * 3600.0, period / 2)
    found = get("grace")
    if found is not None:
        grace = parse_duration(found[1], found[0])
        if period is not None and grace >= period:
            raise SpecError(f"{found[0]}: the grace period must be shorter than rotate-every")
        fields["grace"] = grace

    found = get("regenerate")
    if found is not None:
        name, value = found
        if name == OURS + "regenerate":
            fields["regenerate_token"] = value.strip()
        elif value.strip().lower() in ("true", "yes"):
            fields["regenerate_all"] = True
        elif value.strip().lower() not in ("false", "no", ""):
            wanted = _keys(value, name)
            unknown = [k for k in wanted if k not in keys]
            if unknown:
                raise SpecError(
                    f"{name}: {', '.join(unknown)} is not a generated key "
                    f"(use true to regenerate all, or some of {', '.join(keys)})"
                )
            fields["regenerate_keys"] = wanted

    found = get("managed")
    if found is not None:
        fields["managed"] = _flag(found[1], found[0])

    found = get("hook")
    if found is not None:
        name, value = found
        if value not in HOOKS:
            raise SpecError(f"{name}: unknown rotation hook {value!r} (expected one of {', '.join(HOOKS)})")
        if kind != "string" or len(keys) != 1:
            raise SpecError(f"{name}: a rotation hook changes one password: type string with exactly one key")
        url = get("hook-url")
        if url is None or not re.match(r"^https?://[^/\s]+", url[1]):
            raise SpecError(f"{OURS}hook-url: the {value} hook needs the app's base URL (http://host:port)")
        fields["hook"] = value
        fields["hook_url"] = url[1].rstrip("/")
        user = get("hook-username-key")
        if user is not None:
            if not KEY_NAME.match(user[1]):
                raise SpecError(f"{user[0]}: {user[1]!r} is not a Secret key name")
            fields["hook_username_key"] = user[1]
    found = get("copy-to")
    if found is not None:
        name, value = found
        targets = tuple(t.strip() for t in value.split(",") if t.strip())
        for target in targets:
            namespace, sep, secret = target.partition("/")
            if not (sep and _DNS_NAME.match(namespace) and _DNS_NAME.match(secret)):
                raise SpecError(f"{name}: {target!r} is not namespace/name of a Secret")
        if not targets:
            raise SpecError(f"{name}: name the Secrets to keep in step (namespace/name, comma list)")
        fields["copy_to"] = targets
        copied = get("copy-keys")
        fields["copy_keys"] = _keys(copied[1], copied[0]) if copied is not None else keys
    elif get("copy-keys") is not None:
        raise SpecError(f"{OURS}copy-keys: copies go to the Secrets named in {OURS}copy-to; set it too")
    return Spec(**fields)  # type: ignore[arg-type]
