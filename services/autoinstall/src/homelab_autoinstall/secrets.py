"""The install channel's secrets: per-window seed tokens and per-fetch nonces. Nothing else secret is made here.

No password hash and no cluster join token exist on this side: the admin user's password is locked (SSH keys only)
and nodes join the cluster with credentials `task up` pushes over SSH after the install (see the README's threat
model), so user-data, which travels over plain HTTP on the LAN, holds nothing that outlives the install window.
"""

from __future__ import annotations

import hmac
import secrets


def new_seed_token() -> str:
    """The secret part of a machine's seed URL (URL-safe, 256 bits); a fresh one for every install window."""
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    """Handed out with one user-data fetch; the installed report must carry it (URL- and shell-safe, 192 bits)."""
    return secrets.token_urlsafe(24)


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a token was right."""
    return hmac.compare_digest(given.encode(), expected.encode())
