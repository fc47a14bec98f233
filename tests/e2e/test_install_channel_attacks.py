"""The install channel under attack (issue 9's threat model, services/autoinstall/README.md): a host on the lab LAN
with no credentials, which can take any MAC and IP and reads broadcast traffic (so it knows every machine's MAC),
tries every step of provisioning against our real pxe + autoinstall and gets nothing usable.

One test per step; each test's name says the step it attacks. One lab for all of them (one VM boot in total).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from homelab_bootstrap.lab import FAILED_MARKER, INSTALLED_MARKER, VirtualLab
from homelab_bootstrap.lab.bootserver import AUTOINSTALL_PORT, PXE_PORT
from homelab_bootstrap.lab.commands import run
from homelab_bootstrap.lab.netns import HttpReply, http
from homelab_common.site import load_site

from .conftest import CACHE_DIR, write_site

pytestmark = [pytest.mark.root, pytest.mark.slow]

MACHINES = {
    # name: (mac, ip)
    "first1": ("52:54:00:77:20:01", "10.77.0.31"),  # the first server: attacked while pending
    "victim1": ("52:54:00:77:20:02", "10.77.0.32"),  # its window is raced by the attacker
    "victim2": ("52:54:00:77:20:03", "10.77.0.33"),  # armed; the attacker tries to report it installed
}
ATTACKER_IP = "10.77.0.66"
INSTALL_TIMEOUT = 300.0


@dataclass
class Attack:
    lab: VirtualLab
    namespace: str
    pxe: str
    autoinstall: str

    def get(self, url: str) -> HttpReply:
        return http(self.namespace, "GET", url)

    def post(self, url: str, body: bytes | None = None) -> HttpReply:
        return http(self.namespace, "POST", url, body if body is not None else b"")

    def boot_script(self, mac: str) -> str:
        reply = self.get(f"{self.pxe}/boot.ipxe?mac={mac}")
        assert reply.status == 200
        return reply.text()

    def become(self, ip: str, mac: str) -> None:
        """Take ``ip`` and ``mac`` on the attacker's interface (what anyone on a LAN can do)."""
        for args in (["link", "set", "eth0", "down"], ["link", "set", "eth0", "address", mac],
                     ["addr", "flush", "dev", "eth0"], ["addr", "add", f"{ip}/24", "dev", "eth0"],
                     ["link", "set", "eth0", "up"]):  # fmt: skip
            run(["ip", "-n", self.namespace, *args], hint="the attacker namespace needs root")


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    workdir = tmp_path_factory.mktemp("attacks")
    site_file = write_site(workdir / "site.yaml", [(name, mac, ip) for name, (mac, ip) in MACHINES.items()])
    with VirtualLab(load_site(site_file), site_file, workdir, CACHE_DIR, memory_mb=256) as lab:
        lab.start_homelab()
        namespace = lab.network.add_host("attacker", ATTACKER_IP)
        base = f"http://{lab.bootserver_ip}"
        yield Attack(lab, namespace, f"{base}:{PXE_PORT}", f"{base}:{AUTOINSTALL_PORT}")


def seed_url_in(script: str) -> str | None:
    match = re.search(r"ds=nocloud;s=(\S+/)", script)
    return match.group(1) if match else None


def machine_state(attack: Attack, name: str) -> dict[str, object]:
    reply = attack.lab.autoinstall("GET", f"/api/v1/machines/{MACHINES[name][0]}")
    assert reply.status == 200
    result: dict[str, object] = reply.json()
    return result


def test_attack_on_the_boot_script_of_a_pending_machine_gets_no_seed_url(attack: Attack) -> None:
    mac = MACHINES["first1"][0]
    script = attack.boot_script(mac)
    assert "first1 is not armed for install" in script
    assert seed_url_in(script) is None
    assert "/seed/" not in script
    # asking autoinstall itself, as pxe does, is refused: boot decisions are for this host and trusted networks
    assert attack.get(f"{attack.autoinstall}/api/v1/boot/{mac}").status == 403


def test_attack_on_the_seed_without_a_token_is_refused(attack: Attack) -> None:
    hyphenated = MACHINES["first1"][0].replace(":", "-")
    for path in (f"/seed/{hyphenated}/user-data", f"/seed/{hyphenated}//user-data", f"/seed/{hyphenated}/x/user-data",
                 f"/seed/{hyphenated}/{'A' * 43}/user-data", f"/seed/{hyphenated}/{'A' * 43}/meta-data"):  # fmt: skip
        assert attack.get(attack.autoinstall + path).status in (403, 404), path


def test_attack_on_arming_reinstall_and_wake_without_credentials_is_refused(attack: Attack) -> None:
    mac = MACHINES["first1"][0]
    for path in (f"/api/v1/machines/{mac}/arm", f"/api/v1/machines/{mac}/reinstall", f"/api/v1/machines/{mac}/wake"):
        assert attack.post(attack.autoinstall + path).status == 403, path
    wake = attack.post(f"{attack.pxe}/api/v1/wake", f'{{"mac": "{mac}"}}'.encode())
    assert wake.status == 403
    assert machine_state(attack, "first1")["armed_until"] is None


def test_attack_with_a_stolen_token_from_an_earlier_window_is_refused(attack: Attack) -> None:
    """A seed URL seen once (say in a boot script captured earlier) is worthless after the window is re-armed."""
    mac = MACHINES["first1"][0]
    attack.lab.arm("first1")
    stolen = seed_url_in(attack.boot_script(mac))
    assert stolen is not None
    attack.lab.arm("first1")  # `task up` run again: a fresh window, a fresh token
    assert attack.get(stolen + "user-data").status == 403
    assert attack.get(stolen + "meta-data").status == 403
    assert machine_state(attack, "first1")["state"] == "pending"


def test_attack_from_a_spoofed_ip_and_mac_gets_nothing_more(attack: Attack) -> None:
    """Taking the victim's own address and MAC (what defeats CHECK_SOURCE_IP) or the router's opens nothing."""
    name = "first1"
    mac, ip = MACHINES[name]
    before = machine_state(attack, name)
    try:
        for spoofed_ip, spoofed_mac in ((ip, mac), (str(attack.lab.site.lan.gateway), "52:54:00:77:20:fe")):
            attack.become(spoofed_ip, spoofed_mac)
            for method, url, body in (
                ("GET", f"{attack.autoinstall}/api/v1/boot/{mac}", None),
                ("POST", f"{attack.autoinstall}/api/v1/machines/{mac}/arm", b""),
                ("POST", f"{attack.pxe}/api/v1/wake", f'{{"mac": "{mac}"}}'.encode()),
            ):
                assert refused_or_unreachable(attack.namespace, method, url, body), (spoofed_ip, url)
    finally:
        attack.become(ATTACKER_IP, "52:54:00:77:20:66")
    assert machine_state(attack, name) == before


def refused_or_unreachable(namespace: str, method: str, url: str, body: bytes | None) -> bool:
    """403, or no answer at all (with the router's address taken, replies may go to the router instead)."""
    try:
        return http(namespace, method, url, body, timeout=5).status == 403
    except OSError:
        return True


def test_attack_forging_the_installed_report_with_the_seed_url_is_refused(attack: Attack) -> None:
    """Even holding the current seed URL of an armed machine, no report without the fetch's nonce is believed."""
    name = "victim2"
    mac = MACHINES[name][0]
    attack.lab.arm(name)
    seed = seed_url_in(attack.boot_script(mac))
    assert seed is not None
    for body in (b"", b"nonce=", b"nonce=" + b"A" * 32):
        assert attack.post(seed + "installed", body).status == 403
    assert machine_state(attack, name)["state"] == "pending"
    # the stolen first fetch: the attacker now has a nonce, but what it fetched holds no secret worth having
    user_data = attack.get(seed + "user-data")
    assert user_data.status == 200
    assert_no_long_lived_secret(user_data.text())


def assert_no_long_lived_secret(text: str) -> None:
    document = yaml.safe_load(text)["autoinstall"]
    assert "identity" not in document
    assert document["user-data"]["users"][0]["lock_passwd"] is True
    assert not re.search(r"\$(?:1|5|6|y|2[aby])\$", text), "a password hash was served"
    assert "token" not in text.replace("/seed/", "")
    assert "K10" not in text


def test_attack_racing_for_user_data_makes_the_second_fetch_an_alarm_and_fails_the_install(attack: Attack) -> None:
    """The attacker races the real machine for its one-shot user-data and wins: the machine's own fetch is refused,
    its install fails, and an alarm names both addresses; neither party can then report it installed."""
    name = "victim1"
    mac = MACHINES[name][0]
    attack.lab.arm(name)
    seed = seed_url_in(attack.boot_script(mac))
    assert seed is not None
    stolen = attack.get(seed + "user-data")
    assert stolen.status == 200
    assert_no_long_lived_secret(stolen.text())
    nonce = re.search(r"nonce=([A-Za-z0-9_-]+)", stolen.text())
    assert nonce is not None

    vm = attack.lab.machine(name)
    vm.start()  # the machine was armed before the attacker struck; its boot script still carries the seed URL
    assert vm.wait_for(INSTALLED_MARKER, FAILED_MARKER, timeout=INSTALL_TIMEOUT) == FAILED_MARKER, vm.serial()[-2000:]
    assert f"{FAILED_MARKER} cannot fetch {seed}user-data" in vm.serial()
    vm.stop()

    events = attack.lab.autoinstall("GET", "/api/v1/events?limit=1000").json()
    alarms = [e for e in events if e["kind"] == "alarm" and e["machine"] == name]
    assert len(alarms) == 1, events
    assert alarms[0]["message"].startswith(f"seed for {name} fetched twice, from {ATTACKER_IP} and 10.77.0.")
    metrics = attack.lab.autoinstall("GET", "/metrics").text()
    assert re.search(r"^homelab_autoinstall_seed_alarms_total 1\.0$", metrics, re.MULTILINE)
    # the attacker's nonce and seed URL are now worthless; the machine waits, unarmed, for a person to look
    body = urllib.parse.urlencode({"nonce": nonce.group(1)}).encode()
    assert attack.post(seed + "installed", body).status == 403
    assert attack.get(seed + "user-data").status == 403
    state = machine_state(attack, name)
    assert (state["state"], state["armed_until"]) == ("pending", None)
