"""Keep the kubernetes package from executing the parts of itself this service never uses.

``import kubernetes.client`` (any submodule) first runs ``kubernetes/__init__.py``, which imports every
subpackage: ``dynamic`` (kubernetes_validate, jsonschema, referencing, rpds), ``stream`` (websocket-client),
``leaderelection`` and ``informer``. The homepage uses the client, config and watch only; those four cost the
worker about 3.5 MB resident. :func:`defer_unused_kubernetes_modules` makes them lazy with the standard
``importlib.util.LazyLoader``: they are still importable and work as before, but their code runs on first use
(an attribute access) rather than at import.

Called before the first ``import kubernetes`` (``create_app`` does, before it imports the watch code); once
kubernetes is imported it changes nothing. Python 3.11's LazyLoader is not safe against two threads touching
the same lazy module for the first time at once; nothing in this service touches these modules at all.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

UNUSED_KUBERNETES_MODULES = frozenset(
    {"kubernetes.dynamic", "kubernetes.stream", "kubernetes.leaderelection", "kubernetes.informer"}
)

_installed = threading.Lock()


class _Deferring(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


def defer_unused_kubernetes_modules() -> None:
    """Make :data:`UNUSED_KUBERNETES_MODULES` lazy in this process (idempotent; no effect once imported)."""
    with _installed:
        if not any(isinstance(finder, _Deferring) for finder in sys.meta_path):
            sys.meta_path.insert(0, _Deferring(UNUSED_KUBERNETES_MODULES))
