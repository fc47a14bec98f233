"""Kubernetes objects as JSON dicts (what the API sends), for the homepage's tests and benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from homelab_homepage.app import Homepage


def parts(app: Flask) -> Homepage:
    """The service's parts (catalog, probes, watches) behind an app made by create_app."""
    homepage: Homepage = app.extensions["homepage"]
    return homepage


def ingress(
    name: str,
    namespace: str = "apps",
    annotations: dict[str, str] | None = None,
    host: str | None = None,
    path: str = "/",
    service: str | None = None,
    tls: bool = False,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": "Prefix",
                    "backend": {"service": {"name": service or name, "port": {"number": 80}}},
                }
            ]
        }
    }
    if host is not None:
        rule["host"] = host
    spec: dict[str, Any] = {"rules": [rule]}
    if tls:
        spec["tls"] = [{"hosts": [host] if host else [], "secretName": f"{name}-tls"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": spec,
    }


def homepage(**values: str) -> dict[str, str]:
    """gethomepage annotations: ``homepage(name="Git", group="Dev")`` (enabled is added)."""
    annotations = {"gethomepage.dev/enabled": "true"}
    annotations |= {f"gethomepage.dev/{key.replace('_', '-')}": value for key, value in values.items()}
    return annotations


def service(name: str, namespace: str = "apps", type_: str = "ClusterIP") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": type_, "selector": {"app.kubernetes.io/name": name}, "ports": [{"port": 80}]},
    }


def endpoint_slice(
    service_name: str, ready: list[bool], namespace: str = "apps", suffix: str = "abcde", terminating: int = 0
) -> dict[str, Any]:
    endpoints = [
        {
            "addresses": [f"10.1.{i // 250}.{i % 250 + 1}"],
            "conditions": {"ready": is_ready, "serving": is_ready, "terminating": False},
            "targetRef": {"kind": "Pod", "name": f"{service_name}-{i}", "namespace": namespace},
        }
        for i, is_ready in enumerate(ready)
    ]
    endpoints += [
        {
            "addresses": [f"10.2.0.{i + 1}"],
            "conditions": {"ready": False, "serving": True, "terminating": True},
            "targetRef": {"kind": "Pod", "name": f"{service_name}-old-{i}", "namespace": namespace},
        }
        for i in range(terminating)
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"port": 8080, "protocol": "TCP", "name": "http"}],
    }


def pod(
    name: str, labels: dict[str, str], ready: bool, namespace: str = "apps", phase: str = "Running"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "example/app:1"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }
