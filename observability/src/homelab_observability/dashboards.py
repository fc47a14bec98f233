"""Grafana dashboards as code: an SLO overview and one dashboard per service, built with grafana-foundation-sdk.

Why grafana-foundation-sdk rather than grafanalib: it is Grafana's own, generated from the dashboard schema of the
Grafana release it is versioned with, so a panel option is typed and named as Grafana names it; grafanalib is
hand-written, trails the schema (its last release is from January 2024) and has no maintainer company left.

Every panel is a Prometheus query (``panel_queries`` lists them): the test suite runs each against a real
Prometheus that scraped the real services, and fails when one returns nothing or names a metric nobody exports.
The JSON files land in ``gitops/platform/monitoring/dashboards/`` and reach Grafana as ConfigMaps labelled
``grafana_dashboard: "1"`` (the kube-prometheus-stack Grafana sidecar's default label).
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from homelab_observability.slo import PERIOD

#: kube-prometheus-stack provisions its Prometheus data source with this uid.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
_PROBES = 'route!~"/metrics|/healthz|/readyz"'


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    unit: str = "short"
    legend: str = ""
    kind: str = "timeseries"


def _http(service: str) -> list[Panel]:
    """The panels every homelab_common web service has (homelab_http_* metrics)."""
    sel = f'service="{service}",{_PROBES}'
    return [
        Panel(
            "Requests by status",
            f"sum by (status) (rate(homelab_http_requests_total{{{sel}}}[5m]))",
            "reqps",
            "{{status}}",
        ),
        Panel(
            "Latency p95 by route",
            "histogram_quantile(0.95, sum by (le, route) "
            f"(rate(homelab_http_request_duration_seconds_bucket{{{sel}}}[5m])))",
            "s",
            "{{route}}",
        ),
    ]


SERVICES: dict[str, list[Panel]] = {
    "pxe": [
        Panel("DHCP packets by port", "sum by (port) (rate(homelab_pxe_dhcp_packets_total[5m]))", "pps", "{{port}}"),
        Panel(
            "DHCP ignored by reason", "sum by (reason) (rate(homelab_pxe_dhcp_ignored_total[5m]))", "pps", "{{reason}}"
        ),
        Panel("DHCP errors", "sum(rate(homelab_pxe_dhcp_errors_total[5m]))", "pps", "errors"),
        Panel(
            "TFTP transfers by result",
            "sum by (result) (increase(homelab_pxe_tftp_transfers_total[1h]))",
            "short",
            "{{result}}",
        ),
        Panel(
            "Boot scripts by action",
            "sum by (action) (increase(homelab_pxe_boot_scripts_total[1h]))",
            "short",
            "{{action}}",
        ),
        *_http("pxe"),
    ],
    "autoinstall": [
        Panel("Machines by state", "sum by (state) (homelab_autoinstall_machines)", "short", "{{state}}", "stat"),
        Panel(
            "Installer events by result",
            "sum by (result) (increase(homelab_autoinstall_installer_events_total[1h]))",
            "short",
            "{{result}}",
        ),
        Panel(
            "Requests refused by reason",
            "sum by (reason) (increase(homelab_autoinstall_seed_refusals_total[1h]))",
            "short",
            "{{reason}}",
        ),
        *_http("autoinstall"),
    ],
    "dns": [
        Panel(
            "Seconds since the last good sync",
            "time() - max(homelab_dns_last_successful_sync_timestamp_seconds)",
            "s",
            "",
            "stat",
        ),
        Panel("Syncs by result", "sum by (result) (rate(homelab_dns_syncs_total[5m]))", "ops", "{{result}}"),
        Panel("Records by state", "max by (state) (homelab_dns_records)", "short", "{{state}}"),
        Panel("Leader replicas", "sum(homelab_dns_is_leader)", "short", "", "stat"),
        *_http("dns"),
    ],
    "homepage": [
        Panel("Apps by status", "max by (status) (homelab_homepage_apps_by_status)", "short", "{{status}}"),
        Panel("Configuration mistakes by kind", "max by (kind) (homelab_homepage_diagnostics)", "short", "{{kind}}"),
        Panel(
            "Watch synced",
            'min by (informer) (homelab_k8s_informer_synced{namespace="homepage"})',
            "short",
            "{{informer}}",
            "stat",
        ),
        *_http("homepage"),
    ],
    "backup": [
        Panel(
            "Time since the last good backup",
            "time() - max by (pvc, repository) (homelab_backup_last_success_timestamp_seconds)",
            "s",
            "{{pvc}} to {{repository}}",
        ),
        Panel("Volumes failing to back up", "sum(homelab_backup_failing)", "short", "", "stat"),
        Panel("Restore drills OK", "min by (pvc, repository) (homelab_backup_drill_ok)", "short", "", "stat"),
        Panel("Repository checks OK", "min by (repository) (homelab_backup_check_ok)", "short", "{{repository}}"),
        Panel(
            "Job reports by action and outcome",
            "sum by (action, outcome) (increase(homelab_backup_reports_total[1d]))",
            "short",
            "{{action}} {{outcome}}",
        ),
        Panel("Copies of each volume (3-2-1 wants 2)", "min(homelab_backup_policy_repositories)", "short", "", "stat"),
        Panel("Volumes by state", "max by (state) (homelab_backup_volumes)", "short", "{{state}}"),
        *_http("backup"),
    ],
    "secrets": [
        Panel("Secrets managed", "max(homelab_secrets_managed)", "short", "", "stat"),
        Panel(
            "Time to the next rotation",
            "min by (secret) (homelab_secrets_next_rotation_timestamp_seconds) - time()",
            "s",
            "{{secret}}",
        ),
        Panel(
            "Keys generated by type",
            "sum by (type) (increase(homelab_secrets_generated_total[1d]))",
            "short",
            "{{type}}",
        ),
        Panel("Keys rotated", "sum(increase(homelab_secrets_rotated_total[1d]))", "short", "rotated"),
        Panel(
            "Rotation hooks failed",
            "sum by (hook) (increase(homelab_secrets_hook_failures_total[1d]))",
            "short",
            "{{hook}}",
        ),
        Panel("Default passwords found", "max(homelab_secrets_default_passwords)", "short", "", "stat"),
        Panel(
            "Secrets refused or invalid",
            "max(homelab_secrets_refused) + max(homelab_secrets_invalid)",
            "short",
            "",
            "stat",
        ),
        Panel("Leader replicas", "sum(homelab_secrets_is_leader)", "short", "", "stat"),
        *_http("secrets"),
    ],
}


def slo_overview() -> list[Panel]:
    """Budget left and burn rate of every SLO (one series per SLO, so each panel shows them all)."""
    budget = "(1 - slo:objective:ratio)"
    return [
        Panel(
            f"Error budget left ({PERIOD})",
            f"1 - (slo:sli_error:ratio_rate{PERIOD} / on (slo, service) {budget})",
            "percentunit",
            "{{slo}}",
            "stat",
        ),
        *(
            Panel(
                f"Burn rate over {window} (1 = spending the budget exactly over the period)",
                f"slo:sli_error:ratio_rate{window} / on (slo, service) {budget}",
                "short",
                "{{slo}}",
            )
            for window in ("5m", "1h", "6h", "1d")
        ),
        Panel("Objective", "slo:objective:ratio", "percentunit", "{{slo}}", "stat"),
    ]


def build(uid: str, title: str, panels: list[Panel]) -> str:
    board = dashboard.Dashboard(title).uid(uid).tags(["homelab"]).refresh("1m").time("now-6h", "now")
    for panel in panels:
        target = prometheus.Dataquery().expr(panel.expr).legend_format(panel.legend or "__auto").ref_id("A")
        builder = stat.Panel() if panel.kind == "stat" else timeseries.Panel()
        board = board.with_panel(
            builder.title(panel.title).datasource(DATASOURCE).with_target(target).unit(panel.unit).height(8).span(12)
        )
    return JSONEncoder(sort_keys=True, indent=2).encode(board.build()) + "\n"


def panel_queries() -> dict[str, list[str]]:
    """Every dashboard's panel queries, by dashboard file name (what the tests run); the overview covers every SLO."""
    queries = {"slo-overview": [p.expr for p in slo_overview()]}
    queries.update({f"service-{name}": [p.expr for p in panels] for name, panels in SERVICES.items()})
    return queries


def build_all() -> dict[str, str]:
    boards = {"slo-overview": build("homelab-slo-overview", "SLO overview", slo_overview())}
    for name, panels in SERVICES.items():
        boards[f"service-{name}"] = build(f"homelab-{name}", f"homelab / {name}", panels)
    return boards
