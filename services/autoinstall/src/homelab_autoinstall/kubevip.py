"""kube-vip on the k3s servers: the API address (``k3s.api_vip``) and the LoadBalancer addresses (``k3s.lb_pool``).

Written into k3s's auto-deploy folder on every server, so it runs as soon as the first server's k3s does, before Argo
CD and before any other node joins (joins then use the VIP). One ARP speaker does both jobs: kube-vip in ARP mode
holds the API VIP on the leader server (control plane) and, with ``svc_enable``, answers ARP for every LoadBalancer
Service address; kube-vip's cloud provider hands those addresses out of the pool (k3s's ServiceLB is disabled).
MetalLB would add a second speaker, its own CRDs and (by default) the FRR stack for the same L2 job.
"""

from __future__ import annotations

from typing import Any

import yaml

from homelab_common.site import Site

#: k3s applies every manifest in this folder on the servers (and keeps it applied).
MANIFEST_PATH = "/var/lib/rancher/k3s/server/manifests/homelab-kube-vip.yaml"
#: kube-vip v1.0.4 (the image of the kube-vip 0.9.9 chart) and its cloud provider v0.0.12 (chart 0.2.10).
KUBE_VIP_IMAGE = "ghcr.io/kube-vip/kube-vip:v1.0.4"
CLOUD_PROVIDER_IMAGE = "docker.io/kubevip/kube-vip-cloud-provider:v0.0.12"
NAMESPACE = "kube-system"
K3S_API_PORT = 6443


def _meta(name: str, namespace: str | None = NAMESPACE) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "homelab"},
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def _rbac(name: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name), "automountServiceAccountToken": True},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(name, None),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(name, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        },
    ]


def _rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def _security(add: list[str]) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": add},
    }


def kube_vip(site: Site) -> list[dict[str, Any]]:
    """kube-vip as a DaemonSet on the servers (host network: it adds the VIP to the node's interface)."""
    vip = site.k3s.api_vip
    env = {
        **({"address": str(vip), "port": str(K3S_API_PORT)} if vip is not None else {}),
        # ARP, the VIP as a /32 on the interface of the default route (kube-vip finds it: names differ by machine)
        "vip_arp": "true",
        "vip_cidr": "32",
        "cp_enable": "true" if vip is not None else "false",
        "cp_namespace": NAMESPACE,
        # one server holds the VIP at a time: a Lease, taken over within seconds when its holder dies
        "vip_leaderelection": "true",
        "vip_leasename": "plndr-cp-lock",
        "vip_leaseduration": "5",
        "vip_renewdeadline": "3",
        "vip_retryperiod": "1",
        "svc_enable": "true" if site.k3s.lb_pool else "false",
        "prometheus_server": ":2112",
    }
    rules = [
        _rule("", ["services/status"], ["update"]),
        _rule("", ["services", "endpoints"], ["list", "get", "watch", "update"]),
        _rule("", ["nodes"], ["list", "get", "watch", "update", "patch"]),
        _rule("coordination.k8s.io", ["leases"], ["list", "get", "watch", "update", "create"]),
        _rule("discovery.k8s.io", ["endpointslices"], ["list", "get", "watch", "update"]),
        _rule("", ["pods"], ["list"]),
    ]
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta("kube-vip"),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kube-vip"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "kube-vip"}},
                "spec": {
                    "serviceAccountName": "kube-vip",
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "nodeSelector": {"node-role.kubernetes.io/control-plane": "true"},
                    "tolerations": [
                        {"effect": "NoSchedule", "operator": "Exists"},
                        {"effect": "NoExecute", "operator": "Exists"},
                    ],
                    "containers": [
                        {
                            "name": "kube-vip",
                            "image": KUBE_VIP_IMAGE,
                            "args": ["manager"],
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            # adding an address to the host's interface and sending gratuitous ARP need exactly these
                            "securityContext": _security(["NET_ADMIN", "NET_RAW"]),
                        }
                    ],
                },
            },
        },
    }
    return [*_rbac("kube-vip", rules), daemonset]


def cloud_provider(site: Site) -> list[dict[str, Any]]:
    """kube-vip's cloud provider: LoadBalancer Services get an address from the pool (fixed ones by annotation)."""
    rules = [
        _rule("", ["services", "services/status"], ["get", "list", "watch", "update", "patch"]),
        _rule("", ["configmaps"], ["get", "list", "watch", "create", "update"]),
        _rule("", ["events"], ["create", "patch", "update"]),
        _rule("", ["nodes"], ["get", "list", "watch"]),
        _rule("coordination.k8s.io", ["leases"], ["get", "list", "watch", "create", "update"]),
    ]
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        # the name and namespace the cloud provider reads its pools from
        "metadata": _meta("kubevip"),
        "data": {"range-global": str(site.k3s.lb_pool).replace(" ", "")},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("kube-vip-cloud-provider"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kube-vip-cloud-provider"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "kube-vip-cloud-provider"}},
                "spec": {
                    "serviceAccountName": "kube-vip-cloud-provider",
                    "priorityClassName": "system-cluster-critical",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "tolerations": [{"effect": "NoSchedule", "operator": "Exists"}],
                    "containers": [
                        {
                            "name": "kube-vip-cloud-provider",
                            "image": CLOUD_PROVIDER_IMAGE,
                            "command": [
                                "/kube-vip-cloud-provider",
                                "--leader-elect-resource-name=kube-vip-cloud-controller",
                            ],
                            "securityContext": _security([]),
                        }
                    ],
                },
            },
        },
    }
    return [config, *_rbac("kube-vip-cloud-provider", rules), deployment]


def manifests(site: Site) -> list[dict[str, Any]]:
    """What the servers' auto-deploy folder gets: kube-vip for the VIP and/or the pool, the pool's provider."""
    if site.k3s.api_vip is None and not site.k3s.lb_pool:
        return []
    return kube_vip(site) + (cloud_provider(site) if site.k3s.lb_pool else [])


def manifest_text(site: Site) -> str:
    return yaml.safe_dump_all(manifests(site), sort_keys=False)
