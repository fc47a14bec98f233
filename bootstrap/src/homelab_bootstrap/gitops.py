"""The gitops/ tree and the one site file: which apps exist, which are on, and the values each gets.

Every app folder (``gitops/<tier>/<app>``) is a wrapper chart whose ``values.yaml`` holds our choices and whose
``values-site.yaml`` is *generated* here from the site file (the ApplicationSets pass both to Helm). The site file
is the only thing a user edits; nothing per app is edited by hand. Pure functions except :func:`write_values`.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homelab_common.site import Site

TIERS = ("crds", "system", "platform", "apps")
VALUES_FILE = "values-site.yaml"
ARGOCD_NAMESPACE = "argocd"
ROOT_PATH = "gitops/root"
HEADER = "# Generated from the site file by `homelab-bootstrap render`: edit the site file, not this file.\n"


@dataclass(frozen=True, order=True)
class App:
    tier: str
    name: str

    @property
    def path(self) -> str:
        return f"gitops/{self.tier}/{self.name}"

    @property
    def namespace(self) -> str:
        """Folder name = app name = namespace (the ApplicationSets' convention)."""
        return self.name


def discover_apps(repo: Path) -> list[App]:
    """Every app folder (one with a Chart.yaml) under gitops/<tier>/, in tier order."""
    found = []
    for tier in TIERS:
        base = repo / "gitops" / tier
        if base.is_dir():
            found += [App(tier, d.name) for d in sorted(base.iterdir()) if (d / "Chart.yaml").is_file()]
    return found


def enabled(app: App, site: Site) -> bool:
    """Optional apps follow ``site.apps``; the tunnel connector exists only with a tunnel; the rest is always on."""
    toggles = {
        "woodpecker": site.apps.woodpecker,
        "registry": site.apps.registry,
        "monitoring": site.apps.monitoring,
        "loki": site.apps.logging,
        "alloy": site.apps.logging,
        "homepage": site.apps.homepage,
        "dns": site.apps.dns,
        "backup": site.backup.enabled,
        "cloudflared": site.exposure.cloudflare_tunnel is not None,
        "dns-public": site.exposure.cloudflare_tunnel is not None
        and site.exposure.cloudflare_tunnel.routes is not None,
        # provisioning needs machines to provision (a bring-your-own cluster may list none)
        "pxe": bool(site.machines),
        "autoinstall": bool(site.machines),
    }
    return toggles.get(app.name, True)


def hostname(site: Site, app: str) -> str:
    """The public name of an app's UI: ``<app>.<domain>``."""
    short = {"gitea": "git", "woodpecker": "ci", "monitoring": "grafana", "homepage": "home"}.get(app, app)
    return f"{short}.{site.domain}"


def site_block(site: Site) -> dict[str, Any]:
    """What every wrapper chart's own templates may read as ``.Values.site`` (no secrets: they never reach git)."""
    acme = site.certificates.acme
    return {
        "domain": site.domain,
        "timezone": site.timezone,
        "lan": {"subnet": str(site.lan.subnet), "gateway": str(site.lan.gateway)},
        "k3s": {"version": site.k3s.version},
        "apps": site.apps.model_dump(),
        "exposure": {"mode": site.exposure.mode},
        "certificates": {
            "mode": site.certificates.mode,
            "issuer": "homelab",
            **({"acme": {"email": acme.email, "server": acme.server}} if acme else {}),
        },
        "slo": site.slo.model_dump(),
    }


AUTOINSTALL_PORT = 8081

#: LoadBalancer Services that get a fixed address from ``k3s.lb_pool``, from its first address on in this order
#: (so the router's DNS forwarder and the installers' URL never change); the rest of the pool is handed out freely.
FIXED_LB = ("traefik", "dns", "autoinstall")
#: How a Service asks kube-vip's cloud provider for its address
LB_ANNOTATION = "kube-vip.io/loadbalancerIPs"


def lb_addresses(site: Site) -> dict[str, ipaddress.IPv4Address]:
    """The fixed LoadBalancer addresses (FIXED_LB) when the site has a pool; {} without one."""
    pool = site.lb_pool_range()
    if pool is None:
        return {}
    first, last = pool
    if int(last) - int(first) + 1 < len(FIXED_LB):
        raise ValueError(
            f"k3s.lb_pool: {site.k3s.lb_pool} holds fewer than {len(FIXED_LB)} addresses "
            f"({', '.join(FIXED_LB)} get fixed ones): give a larger range"
        )
    return {name: first + i for i, name in enumerate(FIXED_LB)}


def _lb_annotations(site: Site, name: str) -> dict[str, Any]:
    address = lb_addresses(site).get(name)
    return {"annotations": {LB_ANNOTATION: str(address)}} if address is not None else {}


#: The homepage's route that turns Alertmanager's webhook into an ntfy message (services/homepage)
NTFY_WEBHOOK = "http://homepage.homepage.svc/api/v1/alerts/ntfy"
#: The Secret with the SMTP password (written by the bootstrap job from alerting.email.password), mounted by the
#: operator at /etc/alertmanager/secrets/<name>/ (kube-prometheus-stack's alertmanager.alertmanagerSpec.secrets)
SMTP_SECRET = "alertmanager-smtp"  # noqa: S105 (a Secret's name)
SMTP_PASSWORD_KEY = "password"  # noqa: S105 (a key name)
SMTP_PASSWORD_FILE = f"/etc/alertmanager/secrets/{SMTP_SECRET}/{SMTP_PASSWORD_KEY}"


def alertmanager_receivers(site: Site) -> list[dict[str, Any]]:
    """Alertmanager's receivers ``page`` and ``ticket`` (routed by severity in the monitoring app's values.yaml)
    with what the site's ``alerting`` asks for: ntfy (through the homepage's route) and/or e-mail. Without either,
    alerts stay in Alertmanager and on the dashboards (no webhook to a route that does not exist)."""
    delivery: dict[str, Any] = {}
    if site.alerting.ntfy is not None and site.apps.homepage:
        delivery["webhook_configs"] = [{"url": NTFY_WEBHOOK, "send_resolved": True}]
    if (email := site.alerting.email) is not None:
        mail: dict[str, Any] = {
            "to": ", ".join(email.to),
            "from": email.sender,
            "smarthost": email.smarthost,
            "require_tls": email.require_tls,
            "send_resolved": True,
        }
        if email.username is not None:
            mail |= {"auth_username": email.username, "auth_password_file": SMTP_PASSWORD_FILE}
        delivery["email_configs"] = [mail]
    # copies, not shared objects: yaml.safe_dump would write shared ones as anchors and aliases
    return [{"name": "null"}] + [{"name": name, **copy.deepcopy(delivery)} for name in ("page", "ticket")]


def alertmanager_values(site: Site) -> dict[str, Any]:
    """kube-prometheus-stack's ``alertmanager`` keys the site decides: the receivers, the SMTP password's Secret."""
    values: dict[str, Any] = {"config": {"receivers": alertmanager_receivers(site)}}
    if site.alerting.email is not None and site.alerting.email.password is not None:
        values["alertmanagerSpec"] = {"secrets": [SMTP_SECRET]}
    return values


def runbooks_url(site: Site) -> str:
    """The alert runbooks (docs/runbooks/ of this repository) as Gitea shows them in the site's GitOps repository."""
    return f"https://{hostname(site, 'gitea')}/homelab/gitops/src/branch/main/docs/runbooks"


def site_file_text(site: Site) -> str:
    """The site as a site file (normalised: MACs in colon form, defaults filled), for services that read one."""
    return yaml.safe_dump(site.model_dump(mode="json", exclude_none=True), sort_keys=False)


def _ingress_annotations() -> dict[str, str]:
    return {"cert-manager.io/cluster-issuer": "homelab"}


def _tls(site: Site, app: str) -> list[dict[str, Any]]:
    return [{"secretName": f"{app}-tls", "hosts": [hostname(site, app)]}]


def registry_http_secret(site: Site) -> str:
    """The registry's ``http.secret``: fixed per site (derived from its domain), the same on every render."""
    return hashlib.sha256(f"homelab registry http.secret {site.domain}".encode()).hexdigest()[:32]


def app_values(app: App, site: Site) -> dict[str, Any]:
    """The generated values of one app: the site block plus the upstream chart's keys the site decides."""
    host = hostname(site, app.name)
    values: dict[str, Any] = {"site": site_block(site)}
    if app.tier == "apps":  # our charts: alert rules link their runbook pages (charts/library, global.runbooks)
        values["global"] = {"runbooks": runbooks_url(site)}
    if app.name == "argocd":
        values["argo-cd"] = {
            "global": {"domain": host},
            "server": {"ingress": {"annotations": _ingress_annotations()}},
        }
    elif app.name == "kured":
        values["kured"] = {"configuration": {"timeZone": site.timezone}}
    elif app.name == "monitoring":
        values["kube-prometheus-stack"] = {
            "grafana": {
                "defaultDashboardsTimezone": site.timezone,
                "ingress": {"hosts": [host], "tls": _tls(site, app.name), "annotations": _ingress_annotations()},
            },
            "alertmanager": alertmanager_values(site),
        }
    elif app.name == "gitea":
        values["gitea"] = {
            "gitea": {"config": {"server": {"DOMAIN": host, "ROOT_URL": f"https://{host}/"}}},
            "ingress": {
                "hosts": [{"host": host, "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": _tls(site, app.name),
                "annotations": _ingress_annotations(),
            },
        }
    elif app.name == "woodpecker":
        forge = hostname(site, "gitea")
        values["woodpecker"] = {
            "server": {
                "env": {
                    "WOODPECKER_HOST": f"https://{host}",
                    # the browser is sent to Gitea to log in, so the forge URL is Gitea's public one
                    "WOODPECKER_GITEA_URL": f"https://{forge}",
                    # an in-cluster CA is not in Woodpecker's trust store; ACME certificates are
                    "WOODPECKER_GITEA_SKIP_VERIFY": "true" if site.certificates.mode == "ca" else "false",
                },
                "ingress": {
                    "hosts": [
                        {
                            "host": host,
                            # the server subchart routes every path to its own Service (no backend key)
                            "paths": [{"path": "/"}],
                        }
                    ],
                    "tls": _tls(site, app.name),
                    "annotations": _ingress_annotations(),
                },
            }
        }
    elif app.name == "autoinstall" and site.first_server is not None:
        # installers on the LAN reach the LoadBalancer Service: at its fixed pool address, or (k3s ServiceLB, no
        # pool) on any node: the first server's
        address = lb_addresses(site).get("autoinstall", site.first_server.ip)
        env = {"HOMELAB_AUTOINSTALL_PUBLIC_URL": f"http://{address}:{AUTOINSTALL_PORT}"}
        values["autoinstall"] = {
            "controllers": {"main": {"containers": {"main": {"env": env}}}},
            "configMaps": {"site": {"data": {"site.yaml": site_file_text(site)}}},
        }
        if service := _lb_annotations(site, "autoinstall"):
            values["autoinstall"]["service"] = {"main": service}
    elif app.name == "traefik" and (service := _lb_annotations(site, "traefik")):
        values["traefik"] = {"service": service}
    elif app.name == "dns" and (service := _lb_annotations(site, "dns")):
        values["dns"] = {"service": {"dns": service}}
    elif (
        app.name == "dns-public"
        and site.exposure.cloudflare_tunnel
        and (routes := site.exposure.cloudflare_tunnel.routes)
    ):
        env = {
            "HOMELAB_DNS_DOMAIN_FILTER": json.dumps([routes.domain or site.domain]),
            "HOMELAB_DNS_CLOUDFLARE_ACCOUNT_ID": routes.account_id,
            "HOMELAB_DNS_CLOUDFLARE_TUNNEL_ID": routes.tunnel_id,
        }
        values["dns"] = {"controllers": {"main": {"containers": {"main": {"env": env}}}}}
    elif app.name == "pxe":
        env = {
            "HOMELAB_PXE_LAN": str(site.lan.subnet),
            "HOMELAB_PXE_AUTOINSTALL_URL": f"http://autoinstall.autoinstall.svc:{AUTOINSTALL_PORT}",
        }
        values["pxe"] = {"controllers": {"main": {"containers": {"main": {"env": env}}}}}
    elif app.name == "backup":
        backup = site.backup
        env = {
            "HOMELAB_BACKUP_SCHEDULE": backup.schedule,
            "HOMELAB_BACKUP_JITTER_MINUTES": str(backup.jitter_minutes),
            "HOMELAB_BACKUP_KEEP": json.dumps(backup.keep.model_dump(), sort_keys=True),
            "HOMELAB_BACKUP_CHECK_SCHEDULE": backup.check_schedule,
            "HOMELAB_BACKUP_CHECK_SUBSET": backup.check_subset,
            "HOMELAB_BACKUP_DRILL_SCHEDULE": backup.drill_schedule,
        }
        values["backup"] = {"controllers": {"main": {"containers": {"main": {"env": env}}}}}
    elif app.name == "registry":
        values["docker-registry"] = {
            "ingress": {"hosts": [host], "tls": _tls(site, app.name), "annotations": _ingress_annotations()},
            # fixed, not the chart's randAlphaNum: a new value on every render would restart the registry on each
            # Argo CD refresh (the Deployment carries the Secret's checksum). It signs upload state between
            # replicas only (one runs); pushes and pulls need the generated htpasswd credential all the same.
            "secrets": {"haSharedSecret": registry_http_secret(site)},
        }
    return values


def render_values(repo: Path, site: Site) -> dict[App, dict[str, Any]]:
    return {app: app_values(app, site) for app in discover_apps(repo)}


def write_values(repo: Path, site: Site) -> list[Path]:
    """Write ``values-site.yaml`` into every app folder; returns the files whose content changed."""
    changed = []
    for app, values in render_values(repo, site).items():
        path = repo / app.path / VALUES_FILE
        text = HEADER + yaml.safe_dump(values, sort_keys=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def excluded(repo: Path, site: Site) -> list[str]:
    """App folders the ApplicationSets skip (optional apps the site turns off)."""
    return [app.path for app in discover_apps(repo) if not enabled(app, site)]


def root_values(repo: Path, site: Site, repo_url: str, revision: str = "main") -> dict[str, Any]:
    return {
        "repoURL": repo_url,
        "revision": revision,
        "argocdNamespace": ARGOCD_NAMESPACE,
        "exclude": excluded(repo, site),
    }


def root_application(values: dict[str, Any]) -> dict[str, Any]:
    """The root Application: Argo CD keeps the tier ApplicationSets (gitops/root) in sync with git, itself included."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "root",
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "homelab"},
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": values["repoURL"],
                "targetRevision": values["revision"],
                "path": ROOT_PATH,
                "helm": {"releaseName": "root", "valuesObject": values},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ARGOCD_NAMESPACE},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["ServerSideApply=true"],
            },
        },
    }
