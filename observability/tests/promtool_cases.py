"""promtool unit-test cases: for every alert, input series that make it fire and series that keep it quiet.

Each case is turned into a promtool test group (``promtool test rules``); expected annotations are filled in from
the rendered rule, so a case states only the series, when to look, and the labels of the alerts expected then
(none: the alert must stay quiet).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    alert: str
    series: dict[str, str]
    eval_time: str
    fires: list[dict[str, str]] = field(default_factory=list)


#: a node-exporter filesystem: `instance` is the node's address, `node` its name (the monitor's relabeling)
_DISK = 'instance="192.168.1.11:9100",node="node1",mountpoint="/",fstype="ext4"'


def _pair(alert: str, series: str, firing: str, quiet: str, at: str, labels: dict[str, str]) -> list[Case]:
    return [Case(alert, {series: firing}, at, [labels]), Case(alert, {series: quiet}, at)]


def _slo(alert: str, slo: str, service: str, bad: str, good: str) -> list[Case]:
    """Half the events bad: page and ticket fire; none bad: quiet. Ten minutes of data are enough: a ratio over a
    window longer than the data is the ratio over the data (and fewer steps keep promtool quick)."""
    both = [
        {"slo": slo, "service": service, "severity": "critical"},
        {"slo": slo, "service": service, "severity": "warning"},
    ]
    return [
        Case(alert, {bad: "0+60x15", good: "0+60x15"}, "10m", both),
        Case(alert, {bad: "0x15", good: "0+60x15"}, "10m"),
    ]


def _http(service: str, status: str) -> str:
    return f'homelab_http_requests_total{{service="{service}",route="/api/v1/x",method="GET",status="{status}"}}'


CASES: list[Case] = [
    *_pair(
        "PxeAutoinstallUnreachable",
        'homelab_pxe_boot_scripts_total{action="retry",namespace="pxe"}',
        "0+1x40",
        "0x40",
        "30m",
        {"action": "retry", "namespace": "pxe", "severity": "warning"},
    ),
    *_pair(
        "PxeTftpTransfersFailing",
        'homelab_pxe_tftp_transfers_total{result="failed",namespace="pxe"}',
        "0+1x40",
        "0x40",
        "30m",
        {"result": "failed", "namespace": "pxe", "severity": "warning"},
    ),
    *_pair(
        "AutoinstallSeedRequestsRefused",
        'homelab_autoinstall_seed_refusals_total{reason="bad-token",namespace="autoinstall"}',
        "0+1x30",
        "0x30",
        "20m",
        {"reason": "bad-token", "namespace": "autoinstall", "severity": "warning"},
    ),
    *_pair(
        "AutoinstallInstallFailed",
        'homelab_autoinstall_installer_events_total{result="fail",namespace="autoinstall"}',
        "0x10 1x20",
        "0x30",
        "15m",
        {"result": "fail", "namespace": "autoinstall", "severity": "warning"},
    ),
    *_pair(
        "AutoinstallSeedFetchedTwice",
        'homelab_autoinstall_seed_alarms_total{namespace="autoinstall"}',
        "0x10 1x20",
        "0x30",
        "15m",
        {"namespace": "autoinstall", "severity": "critical"},
    ),
    *_pair(
        "AutoinstallMachineStuckInstalling",
        'homelab_autoinstall_machines{state="installing",namespace="autoinstall"}',
        "1x150",
        "1x60 0x90",
        "130m",
        {"namespace": "autoinstall", "severity": "warning"},
    ),
    *_pair(
        "DnsSyncStale",
        'homelab_dns_last_successful_sync_timestamp_seconds{namespace="dns"}',
        "0x30",
        "0+60x30",
        "20m",
        {"namespace": "dns", "severity": "warning"},
    ),
    *_pair(
        "DnsSyncErrors",
        'homelab_dns_consecutive_sync_errors{namespace="dns"}',
        "6x30",
        "0x30",
        "20m",
        {"namespace": "dns", "severity": "warning"},
    ),
    *_pair(
        "DnsInvalidEndpoints",
        'homelab_dns_invalid_endpoints{namespace="dns"}',
        "1x30",
        "0x30",
        "20m",
        {"namespace": "dns", "severity": "info"},
    ),
    *_pair(
        "DnsOwnerMismatch",
        'homelab_dns_owner_mismatches{namespace="dns"}',
        "1x40",
        "0x40",
        "40m",
        {"namespace": "dns", "severity": "info"},
    ),
    *_pair(
        "DnsCloudflareTokenPermission",
        'homelab_dns_cloudflare_missing_permission{namespace="dns-public",permission="Zone:DNS:Edit"}',
        "1x20",
        "0x20",
        "10m",
        {"namespace": "dns-public", "permission": "Zone:DNS:Edit", "severity": "warning"},
    ),
    *_pair(
        "DnsNoLeader",
        'homelab_dns_is_leader{namespace="dns"}',
        "0x30",
        "1x30",
        "20m",
        {"namespace": "dns", "severity": "warning"},
    ),
    *_pair(
        "HomepageAppDown",
        'homelab_homepage_apps_by_status{status="down",namespace="homepage"}',
        "1x30",
        "0x30",
        "20m",
        {"status": "down", "namespace": "homepage", "severity": "warning"},
    ),
    Case(
        "HomepageConfigurationMistakes",
        {'homelab_homepage_diagnostics{kind="bad-url"}': "1x80"},
        "70m",
        [{"severity": "info"}],
    ),
    Case("HomepageConfigurationMistakes", {'homelab_homepage_diagnostics{kind="unsupported"}': "1x80"}, "70m"),
    Case(
        "HomepageWatchStale",
        {
            'homelab_k8s_informer_last_list_timestamp_seconds{namespace="homepage",informer="ingresses"}': "0x40",
            'homelab_k8s_informer_synced{namespace="homepage",informer="ingresses"}': "1x40",
        },
        "30m",
        [{"namespace": "homepage", "informer": "ingresses", "severity": "warning"}],
    ),
    Case(
        "HomepageWatchStale",
        {
            'homelab_k8s_informer_last_list_timestamp_seconds{namespace="homepage",informer="ingresses"}': "0+60x40",
            'homelab_k8s_informer_synced{namespace="homepage",informer="ingresses"}': "1x40",
        },
        "30m",
    ),
    *_pair(
        "BackupMissed",
        'homelab_backup_last_success_timestamp_seconds{namespace="apps",pvc="data",repository="nas"}',
        "0x1600",  # last success at t=0: over 25 h old at 26 h
        "86400x1600",  # last success at 24 h
        "26h",
        {"namespace": "apps", "pvc": "data", "repository": "nas", "severity": "critical"},
    ),
    Case(
        "BackupMissed",
        {'homelab_backup_last_success_timestamp_seconds{namespace="apps",pvc="data",repository="nas"}': "0x1450"},
        "24h",
    ),
    *_pair(
        "BackupFailing",
        'homelab_backup_failing{namespace="apps",pvc="data",repository="nas"}',
        "1x150",
        "0x150",
        "2h",
        {"namespace": "apps", "pvc": "data", "repository": "nas", "severity": "warning"},
    ),
    Case("BackupFailing", {'homelab_backup_failing{namespace="apps",pvc="data",repository="nas"}': "1x150"}, "30m"),
    *_pair(
        "BackupDrillFailed",
        'homelab_backup_drill_ok{namespace="apps",pvc="data",repository="nas"}',
        "0x60",
        "1x60",
        "1h",
        {"namespace": "apps", "pvc": "data", "repository": "nas", "severity": "critical"},
    ),
    *_pair(
        "BackupCheckFailed",
        'homelab_backup_check_ok{repository="offsite"}',
        "0x60",
        "1x60",
        "1h",
        {"repository": "offsite", "severity": "critical"},
    ),
    *[
        Case(
            "BackupPolicy321Violated",
            {
                'homelab_backup_policy_repositories{namespace="backup"}': f"{repositories}x30",
                'homelab_backup_policy_offsite_repositories{namespace="backup"}': f"{offsite}x30",
            },
            "20m",
            [{"namespace": "backup", "severity": "warning"}] if fires else [],
        )
        # one repository; three, all in the same house; two with one offsite (3-2-1 met)
        for repositories, offsite, fires in ((1, 0, True), (3, 0, True), (2, 1, False))
    ],
    Case("BackupControllerDown", {'up{job="other"}': "1x30"}, "20m", [{"severity": "warning"}]),
    Case("BackupControllerDown", {'homelab_backup_policy_repositories{namespace="backup"}': "2x30"}, "20m"),
    *_pair(
        "SecretRotationOverdue",
        'homelab_secrets_next_rotation_timestamp_seconds{namespace="apps",secret="db"}',
        "0x120",  # due at t=0: an hour overdue at 60 m, firing 10 m later
        "86400x120",
        "75m",
        {"namespace": "apps", "secret": "db", "severity": "warning"},
    ),
    Case(
        "SecretRotationOverdue",
        {'homelab_secrets_next_rotation_timestamp_seconds{namespace="apps",secret="db"}': "0x120"},
        "30m",
    ),
    *_pair(
        "SecretRotationHookFailed",
        'homelab_secrets_hook_failures_total{namespace="secrets",hook="grafana"}',
        "0 0 0 1x10",
        "0x12",
        "5m",
        {"namespace": "secrets", "hook": "grafana", "severity": "warning"},
    ),
    *_pair(
        "DefaultPasswordFound",
        'homelab_secrets_default_passwords{namespace="secrets"}',
        "0 0 1x10",
        "0x12",
        "3m",
        {"namespace": "secrets", "severity": "critical"},
    ),
    *_pair(
        "SecretsRefused",
        'homelab_secrets_refused{namespace="secrets"}',
        "1x40",
        "0x40",
        "40m",
        {"namespace": "secrets", "severity": "info"},
    ),
    *_pair(
        "SecretsInvalidAnnotations",
        'homelab_secrets_invalid{namespace="secrets"}',
        "1x30",
        "0x30",
        "20m",
        {"namespace": "secrets", "severity": "warning"},
    ),
    *_pair(
        "SecretsNoLeader",
        'homelab_secrets_is_leader{namespace="secrets"}',
        "1x5 0x30",
        "1x35",
        "20m",
        {"namespace": "secrets", "severity": "warning"},
    ),
    Case("SecretsNoLeader", {'homelab_secrets_is_leader{namespace="secrets"}': "1x5 0x30"}, "10m"),
    *_pair(
        "NodeDown",
        'up{job="node-exporter",instance="192.168.1.11:9100",node="node1"}',
        "0x10",
        "1x10",
        "10m",
        {"job": "node-exporter", "instance": "192.168.1.11:9100", "node": "node1", "severity": "critical"},
    ),
    Case(
        "NodeDiskFillingUp",
        {
            f"node_filesystem_avail_bytes{{{_DISK}}}": "20-0.02x480",
            f"node_filesystem_size_bytes{{{_DISK}}}": "100x480",
            f"node_filesystem_readonly{{{_DISK}}}": "0x480",
        },
        "8h",
        [
            {
                "instance": "192.168.1.11:9100",
                "node": "node1",
                "mountpoint": "/",
                "fstype": "ext4",
                "severity": "warning",
            }
        ],
    ),
    Case(
        "NodeDiskFillingUp",
        {
            f"node_filesystem_avail_bytes{{{_DISK}}}": "20x480",
            f"node_filesystem_size_bytes{{{_DISK}}}": "100x480",
            f"node_filesystem_readonly{{{_DISK}}}": "0x480",
        },
        "8h",
    ),
    *_pair(
        "NodeRebootPending",
        'kured_reboot_required{node="node1"}',
        "1x1600",
        "1x600 0x1000",
        "25h",
        {"node": "node1", "severity": "warning"},
    ),
    *_pair(
        "CertificateExpiringSoon",
        'certmanager_certificate_expiration_timestamp_seconds{name="web",namespace="apps"}',
        "604800x120",
        "7776000x120",
        "2h",
        {"name": "web", "namespace": "apps", "severity": "warning"},
    ),
    *_pair(
        "CertificateNotReady",
        'certmanager_certificate_ready_status{name="web",namespace="apps",condition="False"}',
        "1x30",
        "0x30",
        "20m",
        {"name": "web", "namespace": "apps", "severity": "warning"},
    ),
    Case(
        "ArgoAppOutOfSync",
        {'argocd_app_info{name="gitea",project="default",sync_status="OutOfSync",health_status="Healthy"}': "1x30"},
        "20m",
        [{"name": "gitea", "project": "default", "severity": "warning"}],
    ),
    Case(
        "ArgoAppOutOfSync",
        {'argocd_app_info{name="gitea",project="default",sync_status="Synced",health_status="Healthy"}': "1x30"},
        "20m",
    ),
    Case(
        "ArgoAppDegraded",
        {'argocd_app_info{name="gitea",project="default",sync_status="Synced",health_status="Degraded"}': "1x30"},
        "20m",
        [{"name": "gitea", "project": "default", "severity": "warning"}],
    ),
    Case(
        "ArgoAppDegraded",
        {'argocd_app_info{name="gitea",project="default",sync_status="Synced",health_status="Healthy"}': "1x30"},
        "20m",
    ),
    *_slo(
        "PxeAvailabilityBudgetBurn",
        "pxe-availability",
        "pxe",
        "homelab_pxe_dhcp_errors_total",
        'homelab_pxe_dhcp_packets_total{port="dhcp"}',
    ),
    *_slo(
        "AutoinstallAvailabilityBudgetBurn",
        "autoinstall-availability",
        "autoinstall",
        _http("autoinstall", "500"),
        _http("autoinstall", "200"),
    ),
    *_slo(
        "DnsAvailabilityBudgetBurn",
        "dns-availability",
        "dns",
        'homelab_dns_syncs_total{result="error"}',
        'homelab_dns_syncs_total{result="ok"}',
    ),
    *_slo(
        "HomepageAvailabilityBudgetBurn",
        "homepage-availability",
        "homepage",
        _http("homepage", "500"),
        _http("homepage", "200"),
    ),
    *_slo(
        "PlatformAvailabilityBudgetBurn",
        "platform-availability",
        "traefik",
        'traefik_service_requests_total{code="502",service="gitea"}',
        'traefik_service_requests_total{code="200",service="gitea"}',
    ),
    *_slo(
        "BackupDurabilityBudgetBurn",
        "backup-durability",
        "backup",
        'homelab_backup_reports_total{action="drill",outcome="corrupted"}',
        'homelab_backup_reports_total{action="backup",outcome="ok"}',
    ),
    *_slo(
        "BackupAvailabilityBudgetBurn",
        "backup-availability",
        "backup",
        _http("backup", "500"),
        _http("backup", "200"),
    ),
    *_slo(
        "SecretsAvailabilityBudgetBurn",
        "secrets-availability",
        "secrets",
        _http("secrets", "500"),
        _http("secrets", "200"),
    ),
    # a slow burn (0.4 % bad against a 0.1 % budget: 4x) opens a ticket without paging
    Case(
        "DnsAvailabilityBudgetBurn",
        {'homelab_dns_syncs_total{result="error"}': "0+4x90", 'homelab_dns_syncs_total{result="ok"}': "0+996x90"},
        "80m",
        [{"slo": "dns-availability", "service": "dns", "severity": "warning"}],
    ),
]
