"""TFTP for the iPXE binaries, on tftpy, with every path decision made here rather than in tftpy.

tftpy serves any existing path under its root, follows symlinks out of it, accepts uploads when the root is
writable, and lets a malformed option (``blksize=abc``, non-ASCII) escape as a parser error. So: tftpy's sessions
are given an empty private directory as their root, which makes them hand every read request to
:meth:`_Files.open` (their ``dyn_file_func``); uploads are refused; and the session class turns what a malformed
request raises into a counted, dropped request. Refusals: absolute paths, ``..``, NUL and other control bytes,
anything whose real path (symlinks resolved) is outside the TFTP root, anything that is not a regular file.

tftpy keeps the protocol (options, blocks, retransmits); the serving loop is ours (see :class:`TftpService`):
sessions run in a few worker processes, so 20 machines booting at once are not served one Python packet at a time.

EDK2 asks for ``tsize``, reads the OACK and aborts with error 8 on purpose before re-requesting: that is counted as
``result="probe"`` and logged at debug, not as a failure.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any

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
                _count("TFTP_ERRORS", "outside-root")
                _say(logging.WARNING, "TFTP request refused", client=f"{self.host}:{self.port}", reason="outside-root")
            raise
        except Exception as exc:  # struct/Unicode/ValueError from tftpy's parser: a malformed request
            _count("TFTP_ERRORS", "malformed")
            _say(logging.DEBUG, "malformed TFTP request dropped", client=f"{self.host}:{self.port}", error=str(exc))
            raise TftpShared.TftpException(f"malformed request: {exc}") from exc

    def cycle(self) -> None:
        try:
            super().cycle()
        except TftpShared.TftpException as exc:
            if str(exc).startswith("Received ERR packet from peer"):
                self.peer_error = True
            raise
        except Exception as exc:
            _count("TFTP_ERRORS", "malformed")
            raise TftpShared.TftpException(f"malformed packet: {exc}") from exc

    def end(self) -> None:
        opened = self.fileobj is not None
        super().end()
        if not opened:
            return
        name = self.file_to_transfer
        client = f"{self.host}:{self.port}"
        sent = int(self.metrics.bytes)
        _count("TFTP_BYTES", None, sent)
        if self.state is None:
            _count("TFTP_TRANSFERS", "complete")
            _say(logging.INFO, "TFTP transfer complete", file=name, client=client, bytes=sent)
        elif self.peer_error and self.next_block == 0:
            _count("TFTP_TRANSFERS", "probe")
            _say(logging.DEBUG, "TFTP client aborted after option negotiation (EDK2 does this)", file=name)
        else:
            _count("TFTP_TRANSFERS", "failed")
            _count("TFTP_ERRORS", "aborted" if self.peer_error else "timeout")
            _say(logging.WARNING, "TFTP transfer incomplete", file=name, client=client, bytes=sent)


#: An event a worker process sends the service process: a counter to add to, or a log line to write.
Event = tuple[Any, ...]


def _apply(event: Event) -> None:
    """Count or log in this process: the one with the metrics registry and the log handlers."""
    if event[0] == "count":
        _, name, label, amount = event
        counter = getattr(metrics, name)
        (counter.labels(label) if label is not None else counter).inc(amount)
    elif event[0] == "log":
        _, level, message, extra = event
        log.log(level, message, extra=extra)


#: Where counts and log lines go: applied here, or (in a worker process) sent to the service process.
_sink: Callable[[Event], None] = _apply


def _count(name: str, label: str | None, amount: float = 1) -> None:
    _sink(("count", name, label, amount))


def _say(level: int, message: str, **extra: Any) -> None:
    if level >= logging.INFO or log.isEnabledFor(level):
        _sink(("log", level, message, extra))


class _Files:
    """tftpy's file hooks: every read request is resolved under ``root``; every upload is refused."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, name: str, **client: Any) -> IO[bytes] | None:
        """tftpy's dyn_file_func: the file to send, or None (tftpy answers "file not found")."""
        try:
            path = resolve(self.root, name)
        except PathRefused as refused:
            _count("TFTP_ERRORS", refused.reason)
            level = logging.INFO if refused.reason == "not-found" else logging.WARNING
            _say(level, "TFTP request refused", file=name, reason=refused.reason, **_who(client))
            return None
        return path.open("rb")

    def refuse_upload(self, path: str, context: object) -> None:
        _count("TFTP_ERRORS", "upload")
        _say(logging.WARNING, "TFTP upload refused", file=os.path.basename(path))


def _worker(root: str, requests: Connection, events: Connection, timeout: float, level: int) -> None:
    """A worker process: tftpy sessions for the requests the service hands it, in one select loop.

    Counts and log lines go back to the service process (its registry is the one ``/metrics`` shows); so does
    ``("done", host, port)`` when a session ends, so the service knows each worker's load.
    """
    global _sink

    def send(event: Event) -> None:
        with contextlib.suppress(OSError):  # the service process is gone: nothing left to tell
            events.send(event)

    _sink = send
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C at a terminal is the service's to handle, not ours
    log.setLevel(level)
    logging.getLogger("tftpy").setLevel(logging.CRITICAL if level > logging.DEBUG else logging.DEBUG)
    files = _Files(Path(root))
    sessions: dict[socket.socket, _GuardedContext] = {}
    with tempfile.TemporaryDirectory(prefix="homelab-pxe-tftp-") as empty:
        send(("ready",))

        def finish(context: _GuardedContext) -> None:
            sessions.pop(context.sock, None)
            context.end()
            send(("done", context.host, context.port))

        while True:
            watched: list[Any] = [requests, *sessions]
            ready = select.select(watched, [], [], timeout)[0]
            for source in ready:
                if source is requests:
                    try:
                        request = requests.recv()
                    except EOFError:  # the service process is gone without a word
                        request = None
                    if request is None:  # the service stops
                        for context in list(sessions.values()):
                            finish(context)
                        return
                    buffer, host, port = request
                    context = _GuardedContext(host, port, timeout, empty, files.open, files.refuse_upload, retries=5)
                    try:
                        context.start(buffer)
                    except TftpShared.TftpTimeoutExpectACK:
                        context.timeout_expectACK = True
                    except TftpShared.TftpException:
                        finish(context)
                        continue
                    sessions[context.sock] = context
                    continue
                context = sessions[source]
                context.timeout_expectACK = False
                try:
                    context.cycle()
                    if context.state is None:
                        finish(context)
                except TftpShared.TftpTimeoutExpectACK:
                    context.timeout_expectACK = True
                except TftpShared.TftpException:
                    finish(context)
                except Exception as exc:  # e.g. a send error: this session ends, the worker's others go on
                    _count("TFTP_ERRORS", "server")
                    _say(logging.ERROR, "TFTP session failed", client=f"{context.host}:{context.port}", error=str(exc))
                    finish(context)
            now = time.time()
            for context in list(sessions.values()):
                try:
                    context.checkTimeout(now)
                except TftpShared.TftpTimeout:
                    context.retry_count += 1
                    if context.retry_count >= context.retries:
                        finish(context)
                    else:
                        with contextlib.suppress(OSError):  # a failed resend is one more timeout
                            context.state.resendLast()


#: Sessions served at once; a request beyond this gets TFTP error 0 "busy" (a flood of requests cannot exhaust
#: the workers' file handles). A LAN of PXE machines booting together stays far below it.
MAX_SESSIONS = 256


@dataclass
class _Worker:
    process: BaseProcess
    requests: Connection
    events: Connection
    active: int = 0


class TftpService:
    """tftpy's protocol for the files under ``root``: a listener thread and ``workers`` worker processes.

    tftpy's own server runs every session in one select loop in one process: with 20 clients at once each block
    waited behind the others' Python work (1.8x dnsmasq's time in benchmarks/pxe_clients.py), and threads do not
    help (the GIL). Here the listener only takes read requests and hands each to the least busy worker process,
    which runs tftpy's session (:class:`_GuardedContext`) on its own socket. A worker that dies is replaced.
    """

    def __init__(
        self, root: Path, bind: str = "0.0.0.0", port: int = 69, *, workers: int = 2, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self.root = root
        self.max_sessions = max_sessions
        self.bind = bind
        self.requested_port = port
        self.worker_count = workers
        #: 2 s retransmit timeout, 5 tries: a busy host must not start resending blocks that are merely late.
        self.timeout = 2.0
        self._sock: socket.socket | None = None
        self._workers: list[_Worker] = []
        self._active: dict[tuple[str, int], _Worker] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        assert self._sock is not None, "not started"
        return int(self._sock.getsockname()[1])

    @property
    def running(self) -> bool:
        return bool(self._threads and self._workers) and all(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Bind, start the workers and serve; the bind error (port in use, no permission) is raised here."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.bind, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.settimeout(0.5)  # how often the listener looks at the stop flag
        self._sock = sock
        try:
            self._workers = self._ready([self._spawn() for _ in range(self.worker_count)])
        except RuntimeError:
            sock.close()
            raise
        self._threads = [
            threading.Thread(target=self._listen, name="pxe-tftp", daemon=True),
            threading.Thread(target=self._collect, name="pxe-tftp-events", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("TFTP serving", extra={"root": str(self.root), "port": self.port, "workers": self.worker_count})

    def _spawn(self) -> _Worker:
        # spawn, not fork: this process has threads (gunicorn, DHCP), and a forked child could inherit a held lock
        context = multiprocessing.get_context("spawn")
        requests_out, requests_in = context.Pipe(duplex=False)
        events_out, events_in = context.Pipe(duplex=False)
        level = log.getEffectiveLevel()
        process = context.Process(
            target=_worker, args=(str(self.root), requests_out, events_in, self.timeout, level), daemon=True
        )
        process.start()
        requests_out.close()
        events_in.close()
        return _Worker(process, requests_in, events_out)

    @staticmethod
    def _ready(workers: list[_Worker], timeout: float = 120.0) -> list[_Worker]:
        """Wait until each worker has started (imports done, loop running): no request waits on a starting one."""
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:
                started = worker.events.poll(max(deadline - time.monotonic(), 0)) and worker.events.recv()
            except (EOFError, OSError):  # it died while starting
                started = False
            if started != ("ready",):
                for other in workers:
                    other.process.kill()
                raise RuntimeError(
                    f"a TFTP worker process did not start within {timeout:.0f}s (exit code {worker.process.exitcode})"
                )
        return workers

    def _listen(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                buffer, (host, port) = self._sock.recvfrom(TftpShared.MAX_BLKSIZE)
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                _count("TFTP_ERRORS", "server")
                log.exception("TFTP listener socket failed; still listening")
                continue
            with self._lock:
                if (host, port) in self._active:
                    continue  # the client repeated its request: its session is already answering
                if len(self._active) >= self.max_sessions:
                    _count("TFTP_ERRORS", "busy")
                    log.warning("TFTP request refused: too many transfers", extra={"client": f"{host}:{port}"})
                    self._sock.sendto(struct.pack("!HH", 5, 0) + b"server busy, retry\0", (host, port))
                    continue
                if not self._workers:  # none could be restarted: a clear error beats silence
                    self._sock.sendto(struct.pack("!HH", 5, 0) + b"TFTP workers down\0", (host, port))
                    continue
                worker = min(self._workers, key=lambda w: w.active)
                worker.active += 1
                self._active[(host, port)] = worker
                try:
                    worker.requests.send((buffer, host, port))
                except OSError:  # the worker is gone; _collect replaces it, the client asks again
                    worker.active -= 1
                    del self._active[(host, port)]

    def _collect(self) -> None:
        """Counts, log lines and session ends from the workers; replaces a worker that died."""
        while not self._stopping.is_set():
            with self._lock:
                by_conn = {w.events: w for w in self._workers}
            for conn in wait(list(by_conn), timeout=0.5):
                worker = by_conn[conn]  # type: ignore[index]
                try:
                    event = worker.events.recv()
                except (EOFError, OSError):
                    self._replace(worker)
                    continue
                if event[0] == "done":
                    with self._lock:
                        if self._active.pop((event[1], event[2]), None) is not None:
                            worker.active -= 1
                else:
                    _apply(event)

    def _replace(self, worker: _Worker) -> None:
        if self._stopping.is_set():
            return
        worker.process.join(timeout=1)
        _count("TFTP_ERRORS", "server")
        log.error("TFTP worker process ended; starting another", extra={"exitcode": worker.process.exitcode})
        try:
            fresh = self._ready([self._spawn()])[0]
        except RuntimeError:
            log.exception("TFTP worker could not be replaced; serving with one fewer")
            with self._lock:
                self._workers.remove(worker)
            return
        with self._lock:
            self._workers[self._workers.index(worker)] = fresh
            for key in [key for key, owner in self._active.items() if owner is worker]:
                del self._active[key]
        worker.requests.close()
        worker.events.close()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.requests.send(None)
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=10)
            while worker.events.poll():  # what the worker said last (a transfer's outcome) still counts
                try:
                    event = worker.events.recv()
                except (EOFError, OSError):
                    break
                if event[0] != "done":
                    _apply(event)
            worker.requests.close()
            worker.events.close()
        if self._sock is not None:
            self._sock.close()


def _who(client: dict[str, Any]) -> dict[str, str]:
    if "raddress" in client:
        return {"client": f"{client['raddress']}:{client.get('rport')}"}
    return {}
