"""The pxe service's Prometheus metrics (served on ``/metrics`` by homelab_common's skeleton)."""

from __future__ import annotations

from prometheus_client import Counter

DHCP_PACKETS = Counter("homelab_pxe_dhcp_packets_total", "DHCP packets received", ["port"])
OFFERS = Counter("homelab_pxe_dhcp_replies_total", "proxyDHCP replies sent, by client architecture", ["arch", "kind"])
IGNORED = Counter("homelab_pxe_dhcp_ignored_total", "DHCP packets not answered, by reason", ["reason"])
MALFORMED = Counter("homelab_pxe_dhcp_malformed_total", "DHCP packets dropped because they do not decode")
DHCP_ERRORS = Counter("homelab_pxe_dhcp_errors_total", "DHCP packets whose handling failed (our fault or send error)")
TFTP_TRANSFERS = Counter("homelab_pxe_tftp_transfers_total", "TFTP read requests by outcome", ["result"])
TFTP_BYTES = Counter("homelab_pxe_tftp_bytes_total", "Bytes sent in completed and partial TFTP transfers")
TFTP_ERRORS = Counter("homelab_pxe_tftp_errors_total", "TFTP requests refused or failed, by reason", ["reason"])
BOOT_SCRIPTS = Counter("homelab_pxe_boot_scripts_total", "iPXE boot scripts served, by action", ["action"])
WAKES = Counter("homelab_pxe_wol_sent_total", "Wake-on-LAN magic packets sent")

# Known label values start at 0: rates, alerts and dashboards then see a series before the first event.
for _port in ("dhcp", "proxy"):
    DHCP_PACKETS.labels(_port)
for _result in ("complete", "probe", "failed"):
    TFTP_TRANSFERS.labels(_result)
for _action in ("install", "local", "ignore", "retry", "wait"):
    BOOT_SCRIPTS.labels(_action)
for _reason in ("not-a-request", "not-pxe", "not-for-us", "message-type", "unsupported-arch"):
    IGNORED.labels(_reason)
WAKES_REFUSED = Counter("homelab_pxe_wol_refused_total", "Wake-on-LAN requests refused: not from a trusted source")
