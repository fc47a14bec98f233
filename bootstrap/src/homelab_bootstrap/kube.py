"""Idempotent apply of whole objects through the official client: read first, write only what differs."""

from __future__ import annotations

import json
from typing import Any, Literal

import kubernetes.client
from kubernetes.client.exceptions import ApiException

PLURALS = {
    "Namespace": "namespaces",
    "Secret": "secrets",
    "Application": "applications",
    "ApplicationSet": "applicationsets",
}

Outcome = Literal["created", "updated", "unchanged"]


def _path(obj: dict[str, Any], collection: bool = False) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    meta = obj["metadata"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if meta.get("namespace"):
        base += f"/namespaces/{meta['namespace']}"
    base += f"/{PLURALS[kind]}"
    return base if collection else f"{base}/{meta['name']}"


def contains(observed: Any, desired: Any) -> bool:
    """Every field we set is present with our value (the server may add fields; that is not drift)."""
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(contains(observed.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        # element by element: the server may default fields inside list items (e.g. a generator's options)
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        method, url, headers, payload, _ = self.client.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(method, url, header_params=headers, body=payload)
        data: bytes = response.read() or b""  # type: ignore[no-untyped-call]
        if response.status >= 400:
            raise ApiException(status=response.status, reason=f"{method} {path}: {data[:300]!r}")
        return json.loads(data or b"null")

    def get(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call("GET", _path(obj))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def apply(self, obj: dict[str, Any], *, create_only: bool = False) -> Outcome:
        """Create ``obj``, or replace it when a field we set differs; ``create_only`` never touches an existing one."""
        observed = self.get(obj)
        if observed is None:
            self._call("POST", _path(obj, collection=True), obj)
            return "created"
        if create_only or contains(observed, obj):
            return "unchanged"
        merged = {**observed, **{k: v for k, v in obj.items() if k != "metadata"}}
        meta = dict(observed["metadata"])
        for key in ("labels", "annotations"):
            if key in obj["metadata"]:
                meta[key] = {**(meta.get(key) or {}), **obj["metadata"][key]}
        merged["metadata"] = meta
        self._call("PUT", _path(obj), merged)
        return "updated"

    def list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        probe = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace, "name": ""}}
        try:
            found = self._call("GET", _path(probe, collection=True))
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return list(found.get("items") or [])
