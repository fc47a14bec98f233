"""A tiny seed server for tests of the lab itself (without our services): boot scripts and seed files from a dict.

It stands where pxe's HTTP side and autoinstall stand in the real flow, so the lab (router, proxyDHCP, firmware,
installer) is tested on its own. The listening socket is created inside the boot-server namespace.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from homelab_bootstrap.lab.netns import call_in_namespace


class StaticSeedServer:
    def __init__(self, namespace: str, address: str, port: int = 8080) -> None:
        self.base = f"http://{address}:{port}"
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.boot_scripts: dict[str, str] = {}  # mac -> script
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                server.requests.append(("GET", url.path))
                if url.path == "/boot.ipxe":
                    mac = parse_qs(url.query).get("mac", [""])[0]
                    script = server.boot_scripts.get(mac, "#!ipxe\necho unknown machine\nexit\n")
                    self._reply(200, script.encode())
                elif url.path in server.files:
                    self._reply(200, server.files[url.path])
                else:
                    self._reply(404, b"not found")

            def do_POST(self) -> None:
                server.requests.append(("POST", self.path))
                self._reply(200 if self.path.endswith("/installed") else 404, b"{}")

        self.httpd = call_in_namespace(namespace, lambda: ThreadingHTTPServer((address, port), Handler))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add_assets(self, assets_dir: Path) -> None:
        """Serve the installer kernel and initrd as pxe would (``/assets/amd64/{vmlinuz,initrd}``)."""
        for name in ("vmlinuz", "initrd"):
            self.files[f"/assets/amd64/{name}"] = (assets_dir / "amd64" / name).read_bytes()

    def add_machine(self, mac: str, hostname: str, user_data_hostname: str | None = None) -> str:
        """Seed files for ``mac`` and its install boot script; returns the seed URL."""
        seed_path = f"/seed/{mac.replace(':', '-')}/t0k3n/"
        self.files[seed_path + "meta-data"] = f"instance-id: i-{hostname}\nlocal-hostname: {hostname}\n".encode()
        self.files[seed_path + "user-data"] = (
            "#cloud-config\nautoinstall:\n  version: 1\n  identity:\n"
            f"    hostname: {user_data_hostname or hostname}\n    username: homelab\n"
        ).encode()
        self.boot_scripts[mac] = (
            f"#!ipxe\nkernel {self.base}/assets/amd64/vmlinuz initrd=initrd console=ttyS0 "
            f"ds=nocloud;s={self.base}{seed_path}\ninitrd {self.base}/assets/amd64/initrd\nboot\n"
        )
        return self.base + seed_path

    def __enter__(self) -> StaticSeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
