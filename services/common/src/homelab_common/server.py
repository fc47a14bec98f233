"""Run a service's Flask app under gunicorn with the shared settings, from the service's console script.

Every image starts ``homelab-<service>``, whose ``main()`` calls ``serve(create_app)``: one way to start all
services, with the one worker + threads model explained in :mod:`homelab_common.gunicorn_conf`.

Memory: this module does not import flask, so the gunicorn master (which only supervises) does not load the web
stack unless the service's own ``main`` does; the worker imports it when it builds the app. Before forking, the
master's objects are frozen (``gc.freeze``) so the worker's garbage collector does not write to them and the
pages stay shared instead of being copied (lower PSS of master + worker).

Shutdown: on SIGTERM gunicorn's worker leaves its loop at once, but a plain interpreter exit then waits for every
non-daemon thread (a ThreadPoolExecutor's workers in the middle of a slow probe, say) until the master kills it
after ``graceful_timeout``: 10 s of a terminating pod still in the endpoints. So the worker's exit is ours
(:func:`worker_exit`): the callbacks registered with :func:`on_stop` run (a service releases its Lease there), each
bounded, then logs are flushed and the process ends without waiting for threads it does not need.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from homelab_common import gunicorn_conf
from homelab_common.logs import JsonFormatter

if TYPE_CHECKING:
    from flask import Flask


STOP_BUDGET = 1.5  # seconds for every on_stop callback together: SIGTERM to exit stays within 2 s
_on_stop: list[Callable[[], None]] = []


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the worker stops (SIGTERM), before it exits; callbacks run in reverse order."""
    _on_stop.append(callback)


def run_stop_callbacks(budget: float = STOP_BUDGET) -> None:
    """Run the registered callbacks in a thread; whatever is not done within ``budget`` seconds is left behind."""

    def run() -> None:
        while _on_stop:
            callback = _on_stop.pop()
            try:
                callback()
            except Exception:
                logging.getLogger("homelab.server").exception("stop callback failed")

    thread = threading.Thread(target=run, name="on-stop", daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(budget)
    if thread.is_alive():
        logging.getLogger("homelab.server").warning(
            "stop callbacks still running; exiting anyway", extra={"seconds": round(time.monotonic() - started, 2)}
        )


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's hook, in the worker after it left its loop: stop the app's work, flush, exit now (see above)."""
    run_stop_callbacks()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class JsonLogger(Logger):  # type: ignore[misc]
    """gunicorn's own lines (boot, worker exits) as JSON too, so a log pipeline parses every line alike."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter(cfg.proc_name or "homelab"))


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.factory()


def gunicorn_options(**overrides: Any) -> dict[str, Any]:
    """The shared gunicorn settings (see gunicorn_conf), with per-service overrides."""
    names = ("bind", "workers", "worker_class", "threads", "timeout", "graceful_timeout", "keepalive")
    options: dict[str, Any] = {name: getattr(gunicorn_conf, name) for name in names}
    options.update(
        accesslog=gunicorn_conf.accesslog,
        errorlog=gunicorn_conf.errorlog,
        worker_tmp_dir=gunicorn_conf.worker_tmp_dir,
        forwarded_allow_ips=gunicorn_conf.forwarded_allow_ips,
        control_socket_disable=gunicorn_conf.control_socket_disable,
        logger_class=JsonLogger,
        worker_exit=worker_exit,
    )
    options.update(overrides)
    return options


def serve(factory: Callable[[], Flask], service: str = "homelab", **overrides: Any) -> None:
    """Serve ``factory()`` until SIGTERM; the app is built in the worker so its threads start there."""
    application = _Gunicorn(factory, gunicorn_options(proc_name=service, **overrides))
    gc.collect()
    gc.freeze()  # see the module docstring
    application.run()
