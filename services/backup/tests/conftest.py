"""Fixtures for the backup tests; the code lives in backup_helpers and backup_kube (unique module names: every test
directory has a conftest, so tests must not import from ``conftest``)."""

from backup_helpers import servers
from backup_kube import clock, cluster, controller

from homelab_common.k8s.testing import kube

__all__ = ["clock", "cluster", "controller", "kube", "servers"]
