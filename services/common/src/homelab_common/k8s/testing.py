"""An HTTP-level Kubernetes API for tests: kmock's emulator, made a little more like the real server.

There is no API server on the development machines, so Kubernetes-facing code is tested through the real
`kubernetes` client against kmock's ``KubernetesEmulator`` served on 127.0.0.1 from a background event loop.
kmock 0.8 keeps no resourceVersions, has no PUT (replace), ignores ``timeoutSeconds`` and answers 404 when
listing a resource it has no objects of; the subclass below adds exactly those, because leader election
(optimistic concurrency), watch restarts and informers on empty resources depend on them. It also keeps every
request's cost flat: kmock routes a request by replaying its whole request log and finds objects by scanning all of
them; here routing looks at the request alone and objects are indexed by resource, namespace and name
(benchmarks/kube_emulator.py). Label and field selectors are not evaluated (kmock's lists ignore them; so does
this emulator, unchanged).

``pods/exec`` is served too (the channel.k8s.io v5/v4 websocket protocol, to ``kubernetes.stream``), with a
local subprocess standing in for the pod's container: see ``_serve_exec``.

Failures are injected on the server, so the code under test sees what it would see from a real cluster:
HTTP error statuses, a 410 ERROR event inside a watch stream, slow replies, and refused connections.

Use in a service's tests (kmock is a dev dependency; this module is never imported by production code)::

    from homelab_common.k8s.testing import kube  # noqa: F401  (a pytest fixture)

    def test_something(kube: KubeEmulator) -> None:
        api = kubernetes.client.CoreV1Api(kube.api_client())
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp.web
import kubernetes.client
import pytest

__all__ = ["KubeEmulator", "kube", "wait_for"]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll until ``predicate()`` is truthy; fail the test after a generous timeout instead of hanging."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate!r}")
        time.sleep(interval)


def _action_name(request: Any) -> str | None:
    return None if request.action is None else str(request.action.value).lower()


@dataclass
class _Fault:
    action: str | None  # kmock action name (list, watch, fetch, create, update, delete) or "replace"
    plural: str | None
    times: int
    status: int | None = None  # answer with this HTTP status
    watch_gone: bool = False  # answer a watch with an ERROR event carrying 410, then end the stream
    delay: float = 0.0  # hold the reply this long before serving it normally


_NAMESPACES = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?$")
_EXEC = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec$")

#: The request being routed to a reaction, in the task that serves it (see ``_Emulator.__iter__``).
_ROUTING: contextvars.ContextVar[Any] = contextvars.ContextVar("kube_emulator_routing", default=None)


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    return aiohttp.web.json_response(body | {"message": message}, status=code)


#: The remotecommand subprotocols a real API server speaks, newest first (v5 adds closing stdin: channel 255).
_EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
_STDIN, _STDOUT, _STDERR, _ERROR, _CLOSE = 0, 1, 2, 3, 255


async def _serve_exec(raw: aiohttp.web.BaseRequest, command: list[str], *, stdin: bool) -> aiohttp.web.StreamResponse:
    """Run ``command`` as a local subprocess **standing in for the pod's container** and speak the API server's
    exec protocol to the client: channel.k8s.io v4/v5 binary frames (first byte the channel: 0 stdin, 1 stdout,
    2 stderr, 3 the final metav1.Status with the exit code as a cause, 255 a v5 client closing a channel).

    There is no container runtime here: the command sees this machine's files and binaries, which is what a
    test needs to make a "container" dump a real database. What is faithful is the wire: the real
    ``kubernetes.stream`` client talks to this handler unchanged.
    """
    ws = aiohttp.web.WebSocketResponse(protocols=_EXEC_PROTOCOLS, max_msg_size=0)
    await ws.prepare(cast(aiohttp.web.Request, raw))
    for channel in (_STDOUT, _STDERR, _ERROR):  # the API server opens each channel with an empty frame
        await ws.send_bytes(bytes([channel]))
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:  # what a runtime reports when the executable is missing
        failure = {"metadata": {}, "status": "Failure", "reason": "InternalError", "message": f"exec failed: {exc}"}
        await ws.send_bytes(bytes([_ERROR]) + json.dumps(failure).encode())
        await ws.close()
        return ws

    async def pump(stream: asyncio.StreamReader, channel: int) -> None:
        while chunk := await stream.read(1 << 15):
            await ws.send_bytes(bytes([channel]) + chunk)

    async def feed() -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.BINARY or not message.data or process.stdin is None:
                continue
            if message.data[0] == _STDIN:
                process.stdin.write(message.data[1:])
                await process.stdin.drain()
            elif message.data[:2] == bytes([_CLOSE, _STDIN]) and ws.ws_protocol == _EXEC_PROTOCOLS[0]:
                process.stdin.close()

    assert process.stdout is not None
    assert process.stderr is not None
    feeder = asyncio.create_task(feed())
    try:
        await asyncio.gather(pump(process.stdout, _STDOUT), pump(process.stderr, _STDERR))
        code = await process.wait()
    finally:
        feeder.cancel()
        if process.returncode is None:
            process.kill()
            await process.wait()
    status: dict[str, Any] = {"metadata": {}, "status": "Success"}
    if code:
        status = {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    await ws.send_bytes(bytes([_ERROR]) + json.dumps(status).encode())
    await ws.close()
    return ws


def _make_emulator_class() -> type[Any]:
    """Build the emulator subclass on first use, so importing this module does not import kmock."""
    import attrs
    import kmock

    reads = (kmock.action.LIST, kmock.action.WATCH, kmock.action.FETCH)

    @attrs.frozen
    class _Objects(kmock.KubernetesEmulator.ObjectsArray):  # type: ignore[misc,valid-type]
        """kmock's store of objects, with an index by resource kept beside it so a list is not a full scan.

        kmock keeps one dict keyed by (resource, namespace, name); the index holds the same Object instances
        per resource in the same (insertion) order, updated on every store and removal.
        """

        by_resource: dict[Any, dict[tuple[str | None, str], Any]] = attrs.field(factory=dict, init=False)

        def _key(self, key: Any) -> tuple[Any, str | None, str] | None:
            if len(key) != 3:
                return None  # a version or history key: the object itself stays where it is
            resource = key[0] if isinstance(key[0], kmock.resource) else kmock.resource(key[0])
            return resource, key[1], key[2]

        def __setitem__(self, key: Any, value: Any, /) -> None:
            super().__setitem__(key, value)
            if (full := self._key(key)) is not None:
                self.by_resource.setdefault(full[0], {})[full[1:]] = self._objects[full]

        def __delitem__(self, key: Any, /) -> None:
            super().__delitem__(key)
            if (full := self._key(key)) is not None:
                del self.by_resource[full[0]][full[1:]]

        def clear(self) -> None:
            super().clear()
            self.by_resource.clear()

    class _Emulator(kmock.KubernetesEmulator):
        def __attrs_post_init__(self) -> None:
            super().__attrs_post_init__()
            objects = _Objects()
            self._objects = objects
            #: the same Object instances as kmock's store, by resource then (namespace, name)
            self.by_resource: dict[Any, dict[tuple[str | None, str], Any]] = objects.by_resource
            # kmock routes a request by asking each reaction "is this request among the requests you see?",
            # which replays the whole request log through the reaction's filters: every request cost grew
            # with the number served before it (~200 ms each after a few thousand). The emulator's reactions
            # are all plain filters (no slices), whose verdict on a request depends on that request alone,
            # so while routing, the log seen by the filters is just the request being routed.
            assert not [view for payload in self._payloads for view in payload._walk(kmock.Slicer)], "a slice"
            self.rv_counter = 0
            self.faults: list[_Fault] = []
            self.write_lock = asyncio.Lock()
            #: Namespace objects by name: kmock 0.8 cannot parse /api/v1/namespaces[/{name}] (it reads
            #: "namespaces" as the namespace-scope prefix), so they are served here before kmock sees the path.
            self.namespaces: dict[str, dict[str, Any]] = {}

        def __iter__(self) -> Iterator[Any]:
            routing = _ROUTING.get()
            if routing is not None:
                yield routing
            else:
                yield from super().__iter__()

        def _KubernetesEmulator__get_objs(self, request: Any, strict: bool) -> list[Any]:  # noqa: N802
            """The objects a request addresses, from the index: one lookup for a named object, the resource's
            objects for a list or watch, never a scan of every stored object (kmock's way)."""
            if request.name is not None and (strict or request.namespace is not None):
                found = self.by_resource.get(request.resource, {}).get((request.namespace, request.name))
                return [] if found is None else [found]
            if request.name is not None:  # a name in any namespace: rare, kmock's scan
                return cast(list[Any], super()._KubernetesEmulator__get_objs(request, strict))  # type: ignore[misc]
            stored = self.by_resource.get(request.resource, {})
            if request.namespace is None and not strict:
                return list(stored.values())
            return [obj for (namespace, _), obj in stored.items() if namespace == request.namespace]

        def _get_resources(self) -> list[Any]:
            declared = kmock.KubernetesScaffold._get_resources(self)
            return list(set(declared) | {resource for resource, stored in self.by_resource.items() if stored})

        async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
            exec_match = _EXEC.match(raw_request.path)
            if exec_match is not None:
                return await self._exec(raw_request, exec_match[1], exec_match[2])
            match = _NAMESPACES.match(raw_request.path)
            if match is None:
                return await super().__call__(raw_request)
            async with self.write_lock:
                return await self._namespace(raw_request, match[1])

        async def _namespace(self, raw: aiohttp.web.BaseRequest, name: str | None) -> aiohttp.web.StreamResponse:
            """List, get, create and delete Namespaces (no watch, no update: nothing here needs them yet)."""
            if name is None and raw.method == "GET":
                items = list(self.namespaces.values())
                meta = {"resourceVersion": str(self.rv_counter)}
                return aiohttp.web.json_response(
                    {"kind": "NamespaceList", "apiVersion": "v1", "metadata": meta, "items": items}
                )
            if name is None and raw.method == "POST":
                body = await raw.json()
                name = str((body.get("metadata") or {}).get("name") or "")
                if not name:
                    return _status(422, "Invalid", "metadata.name: Required value")
                if name in self.namespaces:
                    return _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
                meta = body.setdefault("metadata", {})
                meta |= {"uid": str(uuid.uuid4()), "resourceVersion": self._next_rv()}
                meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                body |= {"kind": "Namespace", "apiVersion": "v1", "status": {"phase": "Active"}}
                self.namespaces[name] = body
                return aiohttp.web.json_response(body, status=201)
            if name is not None and raw.method in ("GET", "DELETE"):
                found = self.namespaces.get(name)
                if found is None:
                    return _status(404, "NotFound", f'namespaces "{name}" not found')
                if raw.method == "DELETE":
                    del self.namespaces[name]
                return aiohttp.web.json_response(found)
            return _status(405, "MethodNotAllowed", f"{raw.method} {raw.path} is not emulated")

        async def _exec(self, raw: aiohttp.web.BaseRequest, namespace: str, name: str) -> aiohttp.web.StreamResponse:
            """pods/exec over a websocket: the pod's container is played by a local subprocess (see _serve_exec)."""
            import kmock

            key = (kmock.resource("v1/pods"), namespace, name)
            async with self._lock:
                pod = self.objects[key].raw if key in self.objects and not self.objects[key].deleted else None
            if pod is None:
                return _status(404, "NotFound", f'pods "{name}" not found')
            containers = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
            container = raw.query.get("container") or (containers[0] if len(containers) == 1 else "")
            if container not in containers:
                message = (
                    f"container {container} is not valid for pod {name}"
                    if container
                    else (f"a container name must be specified for pod {name}, choose one of: {containers}")
                )
                return _status(400, "BadRequest", message)
            if ((pod.get("status") or {}).get("phase") or "Running") != "Running":
                return _status(400, "BadRequest", f"pod {name} is not running")
            command = raw.query.getall("command", [])
            if not command:
                return _status(400, "BadRequest", "you must specify at least 1 command")
            if "upgrade" not in raw.headers.get("Connection", "").lower():
                return _status(400, "BadRequest", "Upgrade request required")
            return await _serve_exec(raw, command, stdin=raw.query.get("stdin") in ("true", "1"))

        def _next_rv(self) -> str:
            self.rv_counter += 1
            return str(self.rv_counter)

        def _take_fault(self, request: Any) -> _Fault | None:
            action = "replace" if request.method == "PUT" else _action_name(request)
            plural = request.resource.plural if request.resource is not None else None
            for fault in self.faults:
                if fault.action not in (None, action) or fault.plural not in (None, plural):
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
            return None

        async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
            _ROUTING.set(request)  # this task serves only this request (aiohttp: one task per request)
            fault = self._take_fault(request) if request.resource is not None else None
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    raise kmock.KubernetesError(status=fault.status, reason="Injected", message="injected fault")
                if fault.watch_gone:
                    gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410}
                    gone |= {"reason": "Expired", "message": "too old resource version"}
                    line = json.dumps({"type": "ERROR", "object": gone}) + "\n"
                    return aiohttp.web.Response(text=line, content_type="application/json")
            if request.resource is None or request.action in reads:
                return await super()._handle(request)
            # Writes are serialised so that a resourceVersion check and the write it guards are atomic.
            async with self.write_lock:
                if request.method == "PUT" and request.name is not None:
                    return await self._replace(request)
                self._prepare_write(request)
                return await super()._handle(request)

        def _stored(self, request: Any) -> Any:
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            return self.objects[key]

        def _check_rv(self, request: Any, stored: Any) -> None:
            wanted = ((request.data or {}).get("metadata") or {}).get("resourceVersion")
            current = stored.raw.get("metadata", {}).get("resourceVersion")
            if wanted and wanted != current:
                raise kmock.KubernetesError(
                    status=409, reason="Conflict", message="the object has been modified; retry"
                )

        def _prepare_write(self, request: Any) -> None:
            if not isinstance(request.data, dict):
                return
            if request.action not in (kmock.action.CREATE, kmock.action.UPDATE):
                return
            meta = request.data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                if request.namespace and not meta.get("namespace"):
                    meta["namespace"] = request.namespace
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            elif request.action == kmock.action.UPDATE:
                self._check_rv(request, self._stored(request))
            meta["resourceVersion"] = self._next_rv()

        async def _replace(self, request: Any) -> aiohttp.web.StreamResponse:
            stored = self._stored(request)
            self._check_rv(request, stored)
            new = dict(request.data)
            meta = dict(new.get("metadata") or {})
            old_meta = stored.raw.get("metadata", {})
            for field in ("uid", "creationTimestamp", "namespace", "name"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            meta["resourceVersion"] = self._next_rv()
            new["metadata"] = meta
            async with self._lock:
                stored.history.append(new)
                await self._buses[request.resource].put({"type": "MODIFIED", "object": stored.raw})
            return aiohttp.web.json_response(stored.raw)

        async def _serve_list(self, request: Any) -> Any:
            try:
                result = cast(dict[str, Any], await super()._serve_list(request))
            except kmock.KubernetesResourceNotFoundError:
                result = {"items": []}  # a real server lists a known resource with no objects as empty
            result["metadata"] = {"resourceVersion": str(self.rv_counter)}
            return result

        async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
            # kmock replays every stored object as ADDED; a real server only sends what is newer than the
            # resourceVersion asked for, and ends the stream after timeoutSeconds.
            since = request.params.get("resourceVersion", "")
            since_rv = int(since) if since.isdigit() else 0
            timeout = float(request.params.get("timeoutSeconds") or 0) or None
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            events = aiter(self._watch_without_gap(request))
            try:
                while True:
                    remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
                    if remaining is not None and remaining <= 0:
                        return
                    try:
                        event = await asyncio.wait_for(anext(events), remaining)
                    except (TimeoutError, StopAsyncIteration):
                        return
                    if isinstance(event, dict) and event.get("type") == "ADDED" and since_rv:
                        rv = str(event["object"].get("metadata", {}).get("resourceVersion", ""))
                        if rv.isdigit() and int(rv) <= since_rv:
                            continue
                    yield event
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        async def _watch_without_gap(self, request: Any) -> AsyncIterator[Any]:
            """kmock's watch, but subscribed to the event bus *before* the snapshot of stored objects is taken.

            kmock 0.8 snapshots first and subscribes after yielding the snapshot, so a write landing in between
            is in neither: a watcher misses it for good (seen as flaky informer tests). Marking the bus first
            can only duplicate such a write (once in the snapshot as ADDED, once from the bus), which a watcher
            must tolerate from a real API server too.
            """
            yield b""
            bus = self._buses[request.resource]
            marker = await bus.mark()
            try:
                async with self._lock:
                    stored = self._KubernetesEmulator__get_objs(request, strict=False)
                    snapshot = [{"type": "ADDED", "object": obj.raw} for obj in stored if not obj.deleted]
                for event in snapshot:
                    yield event
                async for event in bus.stream(since=marker):
                    meta = event.get("object", {}).get("metadata", {})
                    if self._KubernetesEmulator__check(  # type: ignore[attr-defined]
                        request, request.resource, meta.get("namespace"), meta.get("name"), strict=False
                    ):
                        yield event
            finally:
                await bus.unmark(marker)

    return _Emulator


class KubeEmulator:
    """A kmock Kubernetes emulator listening on 127.0.0.1, driven from a background event-loop thread.

    Tests run the code under test in ordinary threads (as production does), so the emulator cannot share
    their thread; everything that touches its state goes through ``_call`` onto its own loop.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-emulator", daemon=True)
        self._emulator: Any = None
        self._runner: aiohttp.web.ServerRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> KubeEmulator:
        self._thread.start()
        self._call(self._astart())
        return self

    def stop(self) -> None:
        self._call(self._astop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _emulator_class(self) -> type[Any]:
        """The kmock emulator served (benchmarks/kube_emulator.py swaps in kmock's own paths as its baseline)."""
        return _make_emulator_class()

    async def _astart(self) -> None:
        self._emulator = self._emulator_class()()
        await self._emulator.__aenter__()
        await self._listen()

    async def _astop(self) -> None:
        await self._unlisten()
        await self._emulator.__aexit__(None, None, None)
        # Watches still streaming to clients that never closed them would be destroyed mid-flight.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _listen(self) -> None:
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self._emulator), shutdown_timeout=0.1)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        self._runner = runner

    async def _unlisten(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=60)

    # -- clients ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_client(self) -> kubernetes.client.ApiClient:
        """A real client for the code under test; few urllib3 retries so refused connections surface."""
        config = kubernetes.client.Configuration(host=self.url)
        config.retries = 1
        return kubernetes.client.ApiClient(config)

    # -- state -----------------------------------------------------------------------------------------

    def objects(self, resource: str, namespace: str | None = None) -> dict[str, dict[str, Any]]:
        """Live objects of a resource (``"v1/pods"``, ``"events.k8s.io/v1/events"``) by namespace/name."""

        async def snapshot() -> dict[str, dict[str, Any]]:
            import kmock

            if resource == "v1/namespaces":
                async with self._emulator.write_lock:
                    return dict(self._emulator.namespaces)
            wanted = kmock.resource(resource)
            found: dict[str, dict[str, Any]] = {}
            async with self._emulator._lock:
                for (res, ns, name), obj in self._emulator.objects.items():
                    if res == wanted and not obj.deleted and namespace in (None, ns):
                        found[f"{ns}/{name}" if ns else name] = obj.raw
            return found

        result: dict[str, dict[str, Any]] = self._call(snapshot())
        return result

    def request_params(self, action: str, plural: str | None = None) -> list[dict[str, str]]:
        """Query parameters of the requests of a kind (``"list"``, ``"watch"``, ...) answered so far."""

        async def collect() -> list[dict[str, str]]:
            return [
                dict(request.params)
                for request in list(self._emulator)
                if _action_name(request) == action
                and (plural is None or (request.resource is not None and request.resource.plural == plural))
            ]

        result: list[dict[str, str]] = self._call(collect())
        return result

    def request_count(self, action: str, plural: str | None = None) -> int:
        return len(self.request_params(action, plural))

    # -- faults ----------------------------------------------------------------------------------------

    def fail(self, action: str | None, plural: str | None, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with an HTTP error (e.g. 500, or 410 on a watch)."""
        self._add_fault(_Fault(action, plural, times, status=status))

    def expire_watch(self, plural: str | None, times: int = 1) -> None:
        """End the next watch with an ERROR event of code 410, as a server does when its history is gone."""
        self._add_fault(_Fault("watch", plural, times, watch_gone=True))

    def delay(self, action: str | None, plural: str | None, seconds: float, times: int = 1) -> None:
        """Hold the next matching replies (a stalled server, seen by the client as a timeout)."""
        self._add_fault(_Fault(action, plural, times, delay=seconds))

    def pending_faults(self) -> int:
        async def count() -> int:
            return len(self._emulator.faults)

        result: int = self._call(count())
        return result

    def _add_fault(self, fault: _Fault) -> None:
        async def add() -> None:
            self._emulator.faults.append(fault)

        self._call(add())

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Stop listening and drop open connections (clients get "connection refused"), then come back."""
        self._call(self._unlisten())
        try:
            yield
        finally:
            self._call(self._listen())


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """A fresh, empty emulated Kubernetes API per test."""
    with KubeEmulator() as emulator:
        yield emulator
