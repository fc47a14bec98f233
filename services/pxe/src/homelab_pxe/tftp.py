"""TFTP for the iPXE binaries, on tftpy, with every path decision made here rather than in tftpy.

tftpy serves any existing path under its root, follows symlinks out of it, accepts uploads when the root is
writable, and lets a malformed option (``blksize=abc``, non-ASCII) escape its server loop. So: tftpy is given an
empty private directory as its root, which makes it hand every read request to :meth:`TftpService.open` (its
``dyn_file_func``); uploads are refused; and the session class catches what a malformed request raises so one bad
packet cannot end the loop. Refusals: absolute paths, ``..``, NUL and other control bytes, anything whose real path
(symlinks resolved) is outside the TFTP root, anything that is not a regular file.

EDK2 asks for ``tsize``, reads the OACK and aborts with error 8 on purpose before re-requesting: that is counted as
``result="probe"`` and logged at debug, not as a failure.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

import tftpy
from tftpy import TftpContexts, TftpShared

from homelab_pxe import metrics

log = logging.getLogger("homelab.pxe.tftp")


class PathRefused(Exception):
    """A requested name that must not be served; ``reason`` is the metric label."""

    def __init__(self, reason: str, name: str) -> None:
        super().__init__(f"{reason}: {name!r}")
        self.reason = reason


def resolve(root: Path, name: str) -> Path:
    """The file under ``root`` that ``name`` means, or :class:`PathRefused` naming why not."""
    if not name:
        raise PathRefused("empty", name)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise PathRefused("control-character", name)
    if name.startswith(("/", "\\")):
        raise PathRefused("absolute", name)
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise PathRefused("parent-directory", name)
    real_root = root.resolve()
    try:
        candidate = (real_root / name).resolve()
        if candidate != real_root and real_root not in candidate.parents:
            raise PathRefused("outside-root", name)
        if not candidate.is_file():
            raise PathRefused("not-found", name)
    except OSError:  # e.g. a name longer than the file system allows (ENAMETOOLONG)
        raise PathRefused("not-found", name) from None
    return candidate


class _GuardedContext(TftpContexts.TftpContextServer):  # type: ignore[misc]
    """tftpy's server session, made safe against malformed requests and reporting each transfer's outcome."""

    peer_error = False

    def start(self, buffer: bytes) -> None:
        try:
            super().start(buffer)
        except TftpShared.TftpException as exc:
            if str(exc) == "bad file path":  # tftpy's own check: the name resolves outside its root
                metrics.TFTP_ERRORS.labels("outside-root").inc()
                log.warning(
                    "TFTP request refused", extra={"client": f"{self.host}:{self.port}", "reason": "outside-root"}
                )
            raise
        except Exception as exc:  # struct/Unicode/ValueError from tftpy's parser: a malformed request
            metrics.TFTP_ERRORS.labels("malformed").inc()
            log.debug("malformed TFTP request dropped", extra={"client": f"{self.host}:{self.port}", "error": str(exc)})
            raise TftpShared.TftpException(f"malformed request: {exc}") from exc

    def cycle(self) -> None:
        try:
            super().cycle()
        except TftpShared.TftpException as exc:
            if str(exc).startswith("Received ERR packet from peer"):
                self.peer_error = True
            raise
        except Exception as exc:
            metrics.TFTP_ERRORS.labels("malformed").inc()
            raise TftpShared.TftpException(f"malformed packet: {exc}") from exc

    def end(self) -> None:
        opened = self.fileobj is not None
        super().end()
        if not opened:
            return
        name = self.file_to_transfer
        client = f"{self.host}:{self.port}"
        sent = int(self.metrics.bytes)
        metrics.TFTP_BYTES.inc(sent)
        if self.state is None:
            metrics.TFTP_TRANSFERS.labels("complete").inc()
            log.info("TFTP transfer complete", extra={"file": name, "client": client, "bytes": sent})
        elif self.peer_error and self.next_block == 0:
            metrics.TFTP_TRANSFERS.labels("probe").inc()
            log.debug("TFTP client aborted after option negotiation (EDK2 does this)", extra={"file": name})
        else:
            metrics.TFTP_TRANSFERS.labels("failed").inc()
            metrics.TFTP_ERRORS.labels("aborted" if self.peer_error else "timeout").inc()
            log.warning("TFTP transfer incomplete", extra={"file": name, "client": client, "bytes": sent})


# tftpy's listen loop builds sessions by this module-level name; this is its only hook for the session class.
# (``tftpy.TftpServer`` is the class re-exported by the package, so the module is fetched by its full name.)
setattr(importlib.import_module("tftpy.TftpServer"), "TftpContextServer", _GuardedContext)  # noqa: B010


class TftpService:
    """A tftpy server for the files under ``root``, on its own thread."""

    def __init__(self, root: Path, bind: str = "0.0.0.0", port: int = 69) -> None:
        self.root = root
        self.bind = bind
        self.requested_port = port
        self._empty = tempfile.TemporaryDirectory(prefix="homelab-pxe-tftp-")
        self.server = tftpy.TftpServer(self._empty.name, dyn_file_func=self.open, upload_open=self._refuse_upload)
        self._thread: threading.Thread | None = None
        self._start_error: Exception | None = None
        quiet = logging.getLogger("homelab").getEffectiveLevel() > logging.DEBUG
        logging.getLogger("tftpy").setLevel(logging.CRITICAL if quiet else logging.DEBUG)

    @property
    def port(self) -> int:
        return int(self.server.listenport)

    def open(self, name: str, **client: Any) -> IO[bytes] | None:
        """tftpy's dyn_file_func: the file to send, or None (tftpy answers "file not found")."""
        try:
            path = resolve(self.root, name)
        except PathRefused as refused:
            metrics.TFTP_ERRORS.labels(refused.reason).inc()
            level = logging.INFO if refused.reason == "not-found" else logging.WARNING
            log.log(level, "TFTP request refused", extra={"file": name, "reason": refused.reason, **_who(client)})
            return None
        return path.open("rb")

    def _refuse_upload(self, path: str, context: object) -> None:
        metrics.TFTP_ERRORS.labels("upload").inc()
        log.warning("TFTP upload refused", extra={"file": os.path.basename(path)})

    def start(self) -> None:
        """Bind and serve on a thread; raise the bind error (port in use, no permission) here, not later."""
        self._thread = threading.Thread(target=self._run, name="pxe-tftp", daemon=True)
        self._thread.start()
        while not self.server.is_running.wait(timeout=0.05):
            if self._start_error is not None:
                self._empty.cleanup()
                raise self._start_error
            if not self._thread.is_alive():
                raise RuntimeError(f"TFTP server did not start on {self.bind}:{self.requested_port}")
        log.info("TFTP serving", extra={"root": str(self.root), "port": self.port})

    def _run(self) -> None:
        while True:
            try:
                # 2 s retransmit timeout, 5 tries: a busy host (many clients at once, one Python loop) must not
                # start resending blocks that are merely late. Also bounds how long stop() takes.
                port = self.server.listenport or self.requested_port  # a restart keeps the port it had
                self.server.listen(self.bind, port, timeout=2, retries=5)
                return
            except Exception as exc:
                if not self.server.is_running.is_set() and self.server.listenport is None:
                    if self.server.sock is not None:
                        self.server.sock.close()
                    self._start_error = exc
                    return
                # tftpy's loop itself failed: log, keep serving on a fresh socket
                metrics.TFTP_ERRORS.labels("server").inc()
                log.exception("TFTP server loop failed; restarting")
                if self.server.sock is not None:
                    self.server.sock.close()
                self.server.sessions = {}

    def stop(self) -> None:
        self.server.stop(now=True)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._empty.cleanup()


def _who(client: dict[str, Any]) -> dict[str, str]:
    if "raddress" in client:
        return {"client": f"{client['raddress']}:{client.get('rport')}"}
    return {}
