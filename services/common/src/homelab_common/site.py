"""The site file: the one YAML file a user edits (domain, LAN, machines, keys, k3s), and its validation.

Every consumer (autoinstall's inventory, the pxe service, `task up`, the virtual lab, the GitOps values) reads it
through :func:`load_site`, so one model decides what is valid. Errors name the field the way a person would find
it in the file (``machines[2].mac: not a MAC address``), all at once rather than one per run.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

_MAC_DIGITS = re.compile(r"^[0-9a-f]{12}$")
_HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
_SSH_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+")


class SiteError(Exception):
    """The site file is invalid; ``problems`` lists ``(field, message)`` pairs, all of them."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {field}: {message}" for field, message in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


def normalise_mac(value: str) -> str:
    """``52-54-00-AB-CD-EF``, ``5254.00ab.cdef``, ``525400abcdef`` → ``52:54:00:ab:cd:ef``; else ValueError."""
    digits = re.sub(r"[:\-.]", "", value.strip().lower())
    if not _MAC_DIGITS.match(digits) or not re.fullmatch(r"[0-9a-fA-F:\-.]+", value.strip()):
        raise ValueError("not a MAC address")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _hostname(value: str) -> str:
    if not _HOSTNAME_LABEL.match(value):
        raise ValueError("not a hostname label (lowercase letters, digits and '-', at most 63)")
    return value


def _domain(value: str) -> str:
    if not _DOMAIN.match(value):
        raise ValueError("not a DNS domain (lowercase, e.g. home.arpa or lab.example.com)")
    return value


def _k3s_version(value: str) -> str:
    if not _K3S_VERSION.match(value):
        raise ValueError("not a k3s version such as v1.33.5+k3s1")
    return value


def _ssh_key(value: str) -> str:
    if not _SSH_KEY.match(value.strip()):
        raise ValueError("not an SSH public key (ssh-ed25519 / ssh-rsa / ecdsa-sha2-*)")
    return value.strip()


def _disk(value: str) -> str:
    if not (value.startswith("/dev/") or value.startswith("serial:")) or len(value) < 6:
        raise ValueError("give the install disk as a device path (/dev/sda, /dev/disk/by-id/...) or serial:<serial>")
    return value


Mac = Annotated[str, AfterValidator(normalise_mac)]
Hostname = Annotated[str, AfterValidator(_hostname)]
Domain = Annotated[str, AfterValidator(_domain)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lan(_Strict):
    """The home LAN the machines boot on; the router keeps serving DHCP, we only add proxyDHCP."""

    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dns: list[ipaddress.IPv4Address] = Field(min_length=1)
    #: The controller's interface on this LAN (detected by `task configure`); None = find it by subnet.
    interface: str | None = None


class Machine(_Strict):
    """One bare-metal node."""

    name: Hostname
    mac: Mac
    ip: ipaddress.IPv4Address
    disk: Annotated[str, AfterValidator(_disk)] = "/dev/sda"
    role: Literal["server", "agent"] = "server"
    arch: Literal["amd64", "arm64"] = "amd64"
    #: RAM in MiB, when known: the installer keeps the whole ISO in RAM, so `task up` checks it is enough.
    memory_mb: int | None = Field(default=None, ge=256)


class K3s(_Strict):
    version: Annotated[str, AfterValidator(_k3s_version)] = "v1.33.5+k3s1"
    #: A free address on the LAN for the Kubernetes API (kube-vip); None = the first server's address.
    api_vip: ipaddress.IPv4Address | None = None
    #: Addresses for LoadBalancer Services (k3s ServiceLB / MetalLB pool), "first-last" on the LAN.
    lb_pool: str | None = None


#: The Ubuntu LTS point release installed by default (the installer assets stage downloads its live-server ISO).
UBUNTU_VERSION = "24.04.3"
#: Where each architecture's live-server ISO, SHA256SUMS and SHA256SUMS.gpg are published ({version} filled in).
UBUNTU_MIRRORS = {
    "amd64": "https://releases.ubuntu.com/{version}/",
    "arm64": "https://cdimage.ubuntu.com/releases/{version}/release/",
}


#: What pxe serves for each architecture from ``<assets>/<arch>/`` (the installer assets stage lays them out): the
#: live-server kernel and initrd from the ISO's casper/ folder, and the ISO itself (the kernel line's ``url=``).
KERNEL_ASSET, INITRD_ASSET, ISO_ASSET = "vmlinuz", "initrd", "live-server.iso"


class UbuntuRelease(_Strict):
    """One architecture's installer: an Ubuntu LTS live-server release (``24.04.3``), from ``url`` (a directory
    holding ``ubuntu-<version>-live-server-<arch>.iso``, ``SHA256SUMS`` and ``SHA256SUMS.gpg``; default: Ubuntu's
    own, see :data:`UBUNTU_MIRRORS`; a superseded amd64 point release is then looked for on old-releases.ubuntu.com)."""

    version: Annotated[str, Field(pattern=r"^\d\d\.04(\.\d{1,2})?$")] = UBUNTU_VERSION
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+/$")] | None = None

    def base_url(self, arch: str) -> str:
        return self.url or UBUNTU_MIRRORS[arch].format(version=self.version)

    def fallback_url(self, arch: str) -> str | None:
        """Where Ubuntu moves an amd64 point release once the next one is out (only when ``url`` is not set)."""
        if self.url is None and arch == "amd64":
            return f"https://old-releases.ubuntu.com/releases/{self.version}/"
        return None

    def iso_name(self, arch: str) -> str:
        return f"ubuntu-{self.version}-live-server-{arch}.iso"


class Installer(_Strict):
    """The Ubuntu release pinned per architecture (LTS only: ``YY.04``)."""

    amd64: UbuntuRelease = UbuntuRelease()
    arm64: UbuntuRelease = UbuntuRelease()

    def release(self, arch: str) -> UbuntuRelease:
        release: UbuntuRelease = getattr(self, arch)
        return release


#: Domains no public CA will issue for and no Cloudflare zone can hold.
PRIVATE_SUFFIXES = ("home.arpa", "local", "lan", "internal", "localdomain", "test", "example", "invalid")


class SecretRef(_Strict):
    """Where a secret is, never the secret: the site file is tracked in git and pushed to Gitea.

    Exactly one of ``file`` (a path on the controller, read by `task up`) or ``env`` (a variable's name).
    """

    file: Path | None = None
    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_literal(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("value" in data or "token" in data):
            raise ValueError("never put the secret itself in the site file: give file: <path> or env: <VARIABLE>")
        if isinstance(data, dict) and (("file" in data) == ("env" in data)):
            raise ValueError("give exactly one of file: <path> or env: <VARIABLE>")
        return data

    def read(self, environ: Mapping[str, str] | None = None) -> str:
        """The secret's value; ``LookupError`` naming the file or variable when it is missing or empty."""
        if self.file is not None:
            try:
                value = self.file.expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise LookupError(f"cannot read {self.file}: {exc.strerror}") from None
            where = str(self.file)
        else:
            assert self.env is not None
            value = (os.environ if environ is None else environ).get(self.env, "").strip()
            where = f"${self.env}"
        if not value:
            raise LookupError(f"{where} is empty")
        return value


class TunnelRoutes(_Strict):
    """Publish Ingresses annotated ``homelab.dev/public: "true"``: a route on the (remotely-managed) tunnel and a
    proxied CNAME to it, written by the dns service through Cloudflare's API; nothing to click in the dashboard."""

    #: The Cloudflare zone the public names are in (default: the site's domain)
    domain: Domain | None = None
    account_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    tunnel_id: Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    #: A scoped API token: Zone:Zone:Read + Zone:DNS:Edit on the zone, Account:Cloudflare Tunnel:Edit
    api_token: SecretRef


class CloudflareTunnel(_Strict):
    """Expose the apps through a Cloudflare Tunnel (cloudflared in the cluster; no port opened on the router)."""

    token: SecretRef
    #: Without it, public hostnames are routed by hand in Cloudflare's dashboard
    routes: TunnelRoutes | None = None


class Exposure(_Strict):
    """How apps are reached: on the LAN only (the default), or also through a Cloudflare Tunnel."""

    cloudflare_tunnel: CloudflareTunnel | None = None

    @property
    def mode(self) -> Literal["lan", "cloudflare-tunnel"]:
        return "lan" if self.cloudflare_tunnel is None else "cloudflare-tunnel"


class Acme(_Strict):
    """Let's Encrypt certificates through the DNS-01 challenge (works without opening ports)."""

    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    dns_provider: Literal["cloudflare"] = "cloudflare"
    token: SecretRef
    server: Literal["production", "staging"] = "production"


class Certificates(_Strict):
    """ACME DNS-01 when ``acme`` is given (needs a public domain), else an in-cluster CA (cert-manager)."""

    acme: Acme | None = None

    @property
    def mode(self) -> Literal["acme", "ca"]:
        return "ca" if self.acme is None else "acme"


class Apps(_Strict):
    """The optional apps. Always on: Argo CD, cert-manager, Traefik, kured, the upgrade controller, and Gitea (it
    holds the GitOps repository once the cluster is bootstrapped)."""

    woodpecker: bool = True
    registry: bool = True
    monitoring: bool = True
    logging: bool = True
    homepage: bool = True
    dns: bool = True


class SloObjectives(_Strict):
    """Service level objectives, in percent: the SLO burn-rate alerts and dashboards (observability/) use them.

    The roadmap's beta target is 70 % availability; a stable site aims at 99.9 % availability and 99.99 % durability.
    """

    availability: float = Field(default=99.9, gt=0, lt=100)
    durability: float = Field(default=99.99, gt=0, lt=100)


class NtfyAlerts(_Strict):
    """Alerts to a phone with the ntfy app: Alertmanager → the homepage's ntfy route → this server and topic."""

    #: A self-hosted ntfy, or the public https://ntfy.sh (there the topic name is the password: make it random).
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")] = "https://ntfy.sh"
    topic: Annotated[str, Field(pattern=r"^[-_A-Za-z0-9]{1,64}$")]
    #: An access token (tk_...) for a protected topic; never the token itself (file: or env:).
    token: SecretRef | None = None


_EMAIL = re.compile(r"^[^@\s,;<>\"]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)
_SMARTHOST = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


def _email(value: str) -> str:
    if not _EMAIL.match(value.strip()):
        raise ValueError(f"{value!r} is not an e-mail address (name@example.com)")
    return value.strip()


def _smarthost(value: str) -> str:
    match = _SMARTHOST.match(value.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{value!r} is not host:port (e.g. smtp.example.com:587)")
    return value.strip()


Email = Annotated[str, AfterValidator(_email)]


class EmailAlerts(_Strict):
    """Alerts by e-mail through an SMTP server (Alertmanager sends them itself): the alternative to ntfy.

    The password is never in the site file (``file:`` or ``env:``): `task up` puts it in the Secret
    monitoring/alertmanager-smtp, which Alertmanager reads as a file. TLS is required: STARTTLS on a submission
    port (587), implicit TLS on 465; ``require_tls: false`` only for a relay on a trusted LAN that has no TLS.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    to: Annotated[list[Email], Field(min_length=1)]
    sender: Email = Field(alias="from")
    smarthost: Annotated[str, AfterValidator(_smarthost)]
    username: Annotated[str, Field(min_length=1)] | None = None
    password: SecretRef | None = None
    require_tls: bool = True

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("to"), str):
            return {**data, "to": [data["to"]]}
        return data

    @model_validator(mode="after")
    def _credentials(self) -> EmailAlerts:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password (or neither, for a server that needs no login)")
        return self


class Alerting(_Strict):
    """Where alerts go (without it they are only on the dashboards and in Alertmanager): ntfy, e-mail, or both."""

    ntfy: NtfyAlerts | None = None
    email: EmailAlerts | None = None


_CRON_FIELD = r"(\*|\d+(-\d+)?(,\d+(-\d+)?)*)(/\d+)?"
_CRON = re.compile(rf"^(@(hourly|daily|weekly|monthly)|{_CRON_FIELD}( {_CRON_FIELD}){{4}})$")


def _cron(value: str) -> str:
    value = " ".join(value.split())
    if not _CRON.match(value):
        raise ValueError("not a schedule: five cron fields (minute hour day month weekday) or @hourly/@daily/@weekly")
    return value


Cron = Annotated[str, AfterValidator(_cron)]


class BackupRepository(_Strict):
    """A restic repository (``url`` as restic writes it: ``/srv/backup``, ``sftp:user@host:/path``,
    ``rest:https://host/``, ``s3:https://host/bucket/path``, ``b2:bucket:path``)."""

    name: Hostname
    url: Annotated[str, Field(min_length=1, max_length=500)]
    #: In another building than the cluster (what 3-2-1's "1" counts); a local path cannot be.
    offsite: bool = False
    #: A new, empty repository: the runner may create it. Otherwise a missing repository is an error, never
    #: silently re-created (a mistyped URL or an unmounted NAS must not start a fresh, empty history).
    init: bool = False
    password: SecretRef
    #: Backend credentials by variable name (AWS_ACCESS_KEY_ID, B2_ACCOUNT_KEY, RESTIC_REST_PASSWORD, ...).
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], SecretRef] = Field(default_factory=dict)

    @property
    def local(self) -> bool:
        scheme, sep, _ = self.url.partition(":")
        return not sep or scheme in ("local",) or self.url.startswith("/")


class BackupKeep(_Strict):
    """Retention per repository (restic forget --keep-*; k8up's keepLast, keepDaily, ...)."""

    last: int = Field(default=0, ge=0)
    hourly: int = Field(default=0, ge=0)
    daily: int = Field(default=7, ge=0)
    weekly: int = Field(default=4, ge=0)
    monthly: int = Field(default=6, ge=0)
    yearly: int = Field(default=0, ge=0)


class Backup(_Strict):
    """Backups of every PVC (and k3s's etcd snapshots) with restic, to every repository listed."""

    enabled: bool = True
    repositories: list[BackupRepository] = Field(default_factory=list)
    schedule: Cron = "@daily"
    #: Each volume's backups start at a fixed offset in [0, jitter) after the schedule (k8up's @daily-random).
    jitter_minutes: int = Field(default=120, ge=0, le=1440)
    keep: BackupKeep = BackupKeep()
    check_schedule: Cron = "@weekly"
    #: restic check --read-data-subset: a percentage (``5%``) or a part (``1/7``).
    check_subset: Annotated[str, Field(pattern=r"^(\d{1,2}(\.\d+)?%|100%|\d+/\d+)$")] = "5%"
    drill_schedule: Cron = "@weekly"


def backup_policy_warnings(site: Site) -> list[tuple[str, str]]:
    """3-2-1 (two repositories besides the live data, one of them offsite): what the site falls short of."""
    backup = site.backup
    if not backup.enabled:
        return [("backup.enabled", "backups are off: nothing protects the cluster's volumes")]
    warnings = []
    if len(backup.repositories) < 2:
        warnings.append(
            ("backup.repositories", f"{len(backup.repositories)} repository(ies): 3-2-1 needs at least 2 (copies)")
        )
    if not any(repo.offsite for repo in backup.repositories):
        warnings.append(("backup.repositories", "none is offsite: 3-2-1 needs one copy in another place"))
    return warnings


class Site(_Strict):
    """The whole site file."""

    domain: Domain = "home.arpa"
    timezone: str = "Etc/UTC"
    lan: Lan
    ssh_keys: list[Annotated[str, AfterValidator(_ssh_key)]] = Field(min_length=1)
    k3s: K3s = K3s()
    installer: Installer = Installer()
    machines: list[Machine] = Field(default_factory=list)
    apps: Apps = Apps()
    exposure: Exposure = Exposure()
    certificates: Certificates = Certificates()
    slo: SloObjectives = SloObjectives()
    alerting: Alerting = Alerting()
    backup: Backup = Backup()

    @property
    def private_domain(self) -> bool:
        return any(self.domain == s or self.domain.endswith("." + s) for s in PRIVATE_SUFFIXES)

    @property
    def architectures(self) -> list[str]:
        """The architectures the machines need installers for, in a stable order."""
        return sorted({m.arch for m in self.machines})

    def machine_by_mac(self, mac: str) -> Machine | None:
        wanted = normalise_mac(mac)
        return next((m for m in self.machines if m.mac == wanted), None)

    @property
    def first_server(self) -> Machine | None:
        return next((m for m in self.machines if m.role == "server"), None)

    def lb_pool_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
        if self.k3s.lb_pool is None:
            return None
        first, _, last = self.k3s.lb_pool.partition("-")
        return ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())


def _field(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(err: dict[str, Any]) -> str:
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def site_problems(site: Site) -> list[tuple[str, str]]:
    """Checks that span fields: unique names/MACs/IPs, addresses inside the subnet, a first server."""
    problems: list[tuple[str, str]] = []
    subnet = site.lan.subnet
    if site.lan.gateway not in subnet:
        problems.append(("lan.gateway", f"{site.lan.gateway} is outside lan.subnet {subnet}"))
    seen: dict[str, dict[object, int]] = {"name": {}, "mac": {}, "ip": {}}
    for index, machine in enumerate(site.machines):
        for key in ("name", "mac", "ip"):
            value = getattr(machine, key)
            if value in seen[key]:
                problems.append(
                    (f"machines[{index}].{key}", f"{value} is already used by machines[{seen[key][value]}]")
                )
            else:
                seen[key][value] = index
        if machine.ip not in subnet:
            problems.append((f"machines[{index}].ip", f"{machine.ip} is outside lan.subnet {subnet}"))
        elif machine.ip in (subnet.network_address, subnet.broadcast_address, site.lan.gateway):
            problems.append((f"machines[{index}].ip", f"{machine.ip} is the subnet's network, broadcast or gateway"))
    if site.machines and site.first_server is None:
        problems.append(("machines", "no machine has role server: the first server initialises the cluster"))
    if site.k3s.api_vip is not None:
        if site.k3s.api_vip not in subnet:
            problems.append(("k3s.api_vip", f"{site.k3s.api_vip} is outside lan.subnet {subnet}"))
        elif site.k3s.api_vip in seen["ip"]:
            problems.append(("k3s.api_vip", f"{site.k3s.api_vip} is already a machine's address"))
    if site.k3s.lb_pool is not None:
        try:
            pool = site.lb_pool_range()
        except ValueError:
            problems.append(("k3s.lb_pool", "not an address range such as 192.168.1.50-192.168.1.70"))
        else:
            assert pool is not None
            first, last = pool
            if first not in subnet or last not in subnet or first > last:
                problems.append(("k3s.lb_pool", f"{site.k3s.lb_pool} is not an ascending range inside {subnet}"))
            elif any(first <= ip <= last for ip in seen["ip"] if isinstance(ip, ipaddress.IPv4Address)):
                problems.append(("k3s.lb_pool", "overlaps a machine's address"))
    names: set[str] = set()
    for index, repo in enumerate(site.backup.repositories):
        if repo.name in names:
            problems.append((f"backup.repositories[{index}].name", f"{repo.name} is used twice"))
        names.add(repo.name)
        if repo.offsite and repo.local:
            problems.append(
                (f"backup.repositories[{index}].offsite", f"{repo.url} is a local path: it cannot be offsite")
            )
    if site.private_domain:
        if site.certificates.acme is not None:
            problems.append(
                (
                    "certificates.acme",
                    f"{site.domain} is a private domain: no public CA issues for it; use a domain "
                    "you own, or drop certificates.acme to use the in-cluster CA",
                )
            )
        if site.exposure.cloudflare_tunnel is not None:
            problems.append(
                ("exposure.cloudflare_tunnel", f"{site.domain} is a private domain: a tunnel needs a Cloudflare zone")
            )
    tunnel = site.exposure.cloudflare_tunnel
    if tunnel is not None and tunnel.routes is not None and tunnel.routes.domain is not None:
        public = tunnel.routes.domain
        if any(public == s or public.endswith("." + s) for s in PRIVATE_SUFFIXES):
            problems.append(("exposure.cloudflare_tunnel.routes.domain", f"{public} is a private domain"))
    return problems


def parse_site(data: Any, source: str = "site file") -> Site:
    """Validate already-parsed YAML; raise :class:`SiteError` listing every problem."""
    if not isinstance(data, dict):
        raise SiteError(source, [("(top level)", "the site file must be a YAML mapping")])
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise SiteError(source, [(_field(e["loc"]), _message(dict(e))) for e in exc.errors()]) from None
    problems = site_problems(site)
    if problems:
        raise SiteError(source, problems)
    return site


def load_site(path: str | Path) -> Site:
    """Read and validate the site file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SiteError(str(file), [("(file)", "not found; create it with `./task configure`")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SiteError(str(file), [("(yaml)", str(exc).replace("\n", " "))]) from None
    return parse_site(data, str(file))
