"""`task configure` and `task up` as a person meets them: real processes on a pseudo-terminal, real Ctrl-C (SIGINT).

Each answer is checked as it is given and asked again on the spot; the SSH key question takes a .pub path; the
non-interactive form picks the interface on the subnet; Ctrl-C ends with one line; every option has a help text.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from homelab_bootstrap import configure, up
from homelab_bootstrap.__main__ import parser
from homelab_common.site import load_site
from homelab_common.testing import free_port

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn0dWkYkYf7bYV3N2W5r7mB0wq1eHj2sH0o8s5s2Jx1 admin@laptop"
SCRIPT = Path(sys.executable).parent / "homelab-bootstrap"


class Terminal:
    """A real `homelab-bootstrap` process on a pseudo-terminal: type lines, read the screen, press Ctrl-C."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], program: Path = SCRIPT) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [str(program), *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env={**os.environ, **env},
            start_new_session=True,  # its own process group, as a shell gives a foreground job
        )
        os.close(slave)
        self.screen = ""

    def type(self, *lines: str) -> None:
        os.write(self.master, "".join(line + "\n" for line in lines).encode())

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            if time.monotonic() > deadline or not self._read(deadline - time.monotonic()):
                raise AssertionError(f"never saw {text!r}; the screen:\n{self.screen}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # the process closed the terminal
            return False
        self.screen += chunk.decode(errors="replace").replace("\r\n", "\n")
        return bool(chunk)

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            pass
        code = self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        os.close(self.master)
        return code


@contextmanager
def terminal(argv: list[str], cwd: Path, **env: str) -> Iterator[Terminal]:
    term = Terminal(argv, cwd, env)
    try:
        yield term
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait(timeout=30)


def test_wizard_checks_each_answer_as_given_and_asks_again_keeping_the_others(tmp_path: Path) -> None:
    """Through a pseudo-terminal: every wrong answer is explained right after it and asked again."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(KEY + "\n")
    (home / ".ssh" / "id_ed25519").write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    site = tmp_path / "site.yaml"
    with terminal(["configure", "--site", str(site)], tmp_path, HOME=str(home)) as term:
        term.wait_for("DNS domain")
        term.type("Home.Arpa!")  # not a domain
        term.wait_for("not a DNS domain")
        term.type("home.arpa")
        term.wait_for("Timezone")
        term.type("Mars/Olympus_Mons")
        term.wait_for("not a known timezone")
        term.type("Europe/Berlin")
        term.wait_for("LAN subnet")
        term.type("198.51.100.300/24")
        term.wait_for("LAN subnet", timeout=30)
        term.type("198.51.100.0/24")
        term.wait_for("Router (gateway) [198.51.100.1]")
        term.type("10.0.0.1")  # outside the subnet
        term.wait_for("10.0.0.1 is outside lan.subnet 198.51.100.0/24")
        term.type("", "")  # gateway .1, DNS = gateway
        term.wait_for("SSH public key for the machines (the key, or its .pub file) [~/.ssh/id_ed25519.pub]")
        term.type("~/.ssh/id_ed25519")  # the private key: refused, never read into the site
        term.wait_for("that is a private key")
        term.type("~/.ssh/nope.pub")
        term.wait_for("neither an SSH public key nor a file")
        term.type("")  # the offered default: ~/.ssh/id_ed25519.pub
        term.wait_for("Kubernetes API [198.51.100.40]")
        term.type("")
        term.wait_for("LoadBalancer services [198.51.100.50-198.51.100.70]")
        term.type("10.0.0.50-10.0.0.70")  # not on the LAN
        term.wait_for("is not an ascending range inside 198.51.100.0/24")
        term.type("")
        term.wait_for("Machine 1 name [node1]")
        term.type("Node_1")
        term.wait_for("not a hostname label")
        term.type("node1", "52:54:00:12:34:zz")
        term.wait_for("not a MAC address")
        term.type("52:54:00:12:34:56")
        term.wait_for("node1 IP address [198.51.100.11]")
        term.type("198.51.100.55")  # inside the LoadBalancer range
        term.wait_for("overlaps a machine's address")
        term.type("198.51.100.40")  # the API address
        term.wait_for("already a machine's address")
        term.type("", "/dev/vda", "boss")
        term.wait_for("node1 role (server/agent) [server]")
        term.wait_for("'boss'")
        term.type("agent")
        term.wait_for("Machine 2 name [done]")
        term.type("")  # no server yet: the list goes on
        term.wait_for("no machine has role server")
        term.type("node2", "52:54:00:12:34:56")  # node1's MAC
        term.wait_for("already used by machines[0]")
        term.type("52:54:00:12:34:57", "", "", "")
        term.wait_for("Machine 3 name [done]")
        term.type("")
        term.wait_for("Optional apps to leave off")
        term.type("jellyfin")
        term.wait_for("unknown app(s) jellyfin")
        term.type("registry")
        assert term.finish() == 0, term.screen
    assert "Traceback" not in term.screen
    loaded = load_site(site)
    assert loaded.timezone == "Europe/Berlin"
    assert str(loaded.lan.gateway) == "198.51.100.1"
    assert loaded.ssh_keys == [KEY]
    assert [(m.name, m.role, str(m.ip)) for m in loaded.machines] == [
        ("node1", "agent", "198.51.100.11"),
        ("node2", "server", "198.51.100.12"),
    ]
    assert loaded.machines[0].disk == "/dev/vda"
    assert loaded.apps.registry is False
    assert loaded.lan.interface is None  # nothing here is on 198.51.100.0/24: left for pxe to find
    assert "PRIVATE" not in site.read_text()


def test_ctrl_c_in_the_wizard_ends_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    with terminal(["up", "--site", str(site), "--state", str(tmp_path / "state")], tmp_path) as term:
        term.wait_for("DNS domain")
        term.type("home.arpa")
        term.wait_for("Timezone")
        term.proc.send_signal(signal.SIGINT)
        code = term.finish()
    assert code == 130
    assert "Traceback" not in term.screen
    last = term.screen.strip().splitlines()[-1]
    assert last == f"configure: stopped (Ctrl-C); nothing written to {site}. Run ./task configure to start again."
    assert not site.exists()


def test_ctrl_c_in_task_configure_is_one_line_from_the_task_wrapper_too(tmp_path: Path) -> None:
    """`./task configure`, Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group."""
    site = tmp_path / "site.yaml"
    term = Terminal(["configure", "--", "--site", str(site)], tmp_path, {}, program=REPO / "task")
    try:
        term.wait_for("DNS domain", timeout=120)
        os.killpg(term.proc.pid, signal.SIGINT)
        code = term.finish()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert code == 130, term.screen
    assert "task:" not in term.screen  # none of go-task's "Signal received" / "Failed to run task"
    assert term.screen.strip().splitlines()[-1].startswith("configure: stopped (Ctrl-C); nothing written")


def _kubeconfig(path: Path, port: int) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "k", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
                "current-context": "k",
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    return path


def test_ctrl_c_during_a_stage_says_what_was_stopped_and_how_to_resume(tmp_path: Path) -> None:
    """A Kubernetes API that accepts connections and never answers holds `up` in its bootstrap stage."""
    with socket.socket() as api:
        api.bind(("127.0.0.1", 0))
        api.listen()
        kubeconfig = _kubeconfig(tmp_path / "kubeconfig", api.getsockname()[1])
        state = tmp_path / "state"
        argv = ["up", "--site", str(REPO / "site.example.yaml"), "--state", str(state), "--kubeconfig"]
        argv += [str(kubeconfig), "--git-port", str(free_port())]
        with terminal(argv, tmp_path, HOMELAB_SOURCE=str(REPO)) as term:
            term.wait_for("[4/5] bootstrap: starting", timeout=120)
            time.sleep(0.5)  # into the stage's first request
            term.proc.send_signal(signal.SIGINT)
            code = term.finish()
    assert code == 130, term.screen
    assert "Traceback" not in term.screen
    lines = term.screen.strip().splitlines()
    assert lines[-2].startswith("[4/5] bootstrap: interrupted after")
    assert lines[-1].startswith(
        "up: stopped (Ctrl-C) during the bootstrap stage; stopped the GitOps repository server. Run ./task up again "
        "to resume: finished stages are skipped"
    )
    timings = json.loads((state / "up-timings.json").read_text())
    assert timings["stages"]["bootstrap"]["interrupted"] is True


def test_interrupted_metal_stage_names_the_boot_services_or_the_lab(tmp_path: Path) -> None:
    opts = up.Options(site_path=tmp_path / "s.yaml", state=tmp_path, source=REPO)
    assert "stopped the boot services (pxe, autoinstall) and the GitOps" in up.interrupted("metal", opts)
    opts.lab = True
    assert "stopped the virtual lab's VMs and network and the GitOps" in up.interrupted("metal", opts)
    assert "before any stage started; nothing was changed" in up.interrupted(None, opts)


def test_run_stages_records_an_interrupted_stage_and_runs_no_further(tmp_path: Path) -> None:
    def pressed() -> None:
        raise KeyboardInterrupt

    ran: list[str] = []
    lines: list[str] = []
    stages = [up.Stage("cluster", lambda: None, pressed), up.Stage("apps", lambda: None, lambda: ran.append("a"))]
    with pytest.raises(up.Interrupted) as stopped:
        up.run_stages(stages, lines.append, tmp_path / "t.json")
    assert stopped.value.stage == "cluster"
    assert ran == []
    assert lines[-1].startswith("[1/2] cluster: interrupted after")
    assert json.loads((tmp_path / "t.json").read_text())["stages"]["cluster"] == {
        "skipped": False,
        "seconds": 0.0,
        "interrupted": True,
    }


# ------------------------------------------------------------------------ detection and the flags form

ON_TWO_LANS = configure.Detected(
    interface="wlan0",  # the default route: not the machines' LAN
    address="192.168.1.20",
    subnet="192.168.1.0/24",
    gateway="192.168.1.1",
    ssh_keys=[KEY],
    addresses=[("lo", "127.0.0.1/8"), ("wlan0", "192.168.1.20/24"), ("enp2s0", "10.77.0.2/24")],
)


def _configure(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["configure", *argv])


def test_non_interactive_picks_the_interface_on_the_subnet_and_says_so(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    flags = ["--site", str(site), "--non-interactive", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.1"]
    out = io.StringIO()
    assert configure.configure(_configure(*flags), io.StringIO(), out, ON_TWO_LANS) == 0
    assert load_site(site).lan.interface == "enp2s0"
    assert "--interface not given: picked enp2s0 (its address 10.77.0.2 is in 10.77.0.0/24)" in out.getvalue()


def test_non_interactive_with_no_interface_on_the_subnet_leaves_it_unset_and_says_so(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    flags = ["--site", str(site), "--non-interactive", "--subnet", "10.99.0.0/24", "--gateway", "10.99.0.1"]
    out = io.StringIO()
    assert configure.configure(_configure(*flags), io.StringIO(), out, ON_TWO_LANS) == 0
    assert load_site(site).lan.interface is None  # never the default route's wlan0: pxe would refuse to start
    assert "no interface here has an address in 10.99.0.0/24: lan.interface left unset" in out.getvalue()


def test_non_interactive_ssh_key_file_that_is_private_names_the_flag(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    flags = ["--site", str(tmp_path / "s.yaml"), "--non-interactive", "--subnet", "10.77.0.0/24"]
    flags += ["--gateway", "10.77.0.1", "--ssh-key-file", str(private)]
    out = io.StringIO()
    assert configure.configure(_configure(*flags), io.StringIO(), out, ON_TWO_LANS) == 1
    assert "--ssh-key-file: that is a private key" in out.getvalue()


def test_wizard_with_an_empty_detection_says_nothing_was_detected(tmp_path: Path) -> None:
    answers = ["", "", "", "10.20.0.0/24", "", "", KEY, "", "", "", "52:54:00:00:00:09", "", "", "", "", ""]
    out = io.StringIO()
    site = tmp_path / "site.yaml"
    empty = configure.Detected()
    assert configure.configure(_configure("--site", str(site)), io.StringIO("\n".join(answers) + "\n"), out, empty) == 0
    text = out.getvalue()
    assert "Nothing was detected: this machine has no IPv4 default route" in text
    assert "LAN subnet: " in text
    assert "LAN subnet [" not in text  # no default offered
    assert "  an answer is needed" in text  # Enter at the subnet question: nothing made up
    assert str(load_site(site).lan.subnet) == "10.20.0.0/24"


def test_read_key_takes_a_key_or_its_pub_file_and_refuses_the_rest(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text(f"# a comment\n{KEY}\n")
    assert configure.read_key(str(pub)) == KEY
    assert configure.read_key(KEY) == KEY
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ValueError, match="holds no SSH public key"):
        configure.read_key(str(tmp_path / "notes.txt"))


# ------------------------------------------------------------------------------------------- --help


def _options(p: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {opt}", a) for opt, a in _options(sub))
        elif action.option_strings and action.dest != "help":
            yield action.option_strings[0], action


def test_every_option_of_every_command_has_a_help_text() -> None:
    missing = [name for name, action in _options(parser()) if not action.help]
    assert missing == []


def test_up_help_explains_site_state_autoinstall_url_and_git_port(tmp_path: Path) -> None:
    proc = subprocess.run([str(SCRIPT), "up", "--help"], capture_output=True, text=True, cwd=tmp_path, check=True)
    text = " ".join(proc.stdout.split())
    assert "the configuration wizard writes it when missing" in text
    assert "where up keeps its state" in text
    assert "autoinstall service it starts" in text
    assert "serves the GitOps repository to the cluster (default: 8418)" in text


def test_pxe_is_told_whether_arm64_machines_boot_so_it_warns_about_snp_efi_only_then(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "site.example.yaml").read_text())
    opts = up.Options(site_path=REPO / "site.example.yaml", state=tmp_path, source=REPO)
    assert (
        up.boot_service_env(opts, load_site(REPO / "site.example.yaml"), "192.168.1.5")["pxe"][
            "HOMELAB_PXE_ARM64_MACHINES"
        ]
        == "false"
    )
    data["machines"][-1]["arch"] = "arm64"
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(data))
    env = up.boot_service_env(opts, load_site(tmp_path / "site.yaml"), "192.168.1.5")["pxe"]
    assert env["HOMELAB_PXE_ARM64_MACHINES"] == "true"
