"""Fixtures for the secrets tests; the code lives in secrets_helpers (a unique module name: every test directory has
a conftest, so tests must not import from ``conftest``)."""

from homelab_common.k8s.testing import kube

__all__ = ["kube"]
