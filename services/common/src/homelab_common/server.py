"""Run a service's Flask app under gunicorn with the shared settings, from the service's console script.

Every image starts ``homelab-<service>``, whose ``main()`` calls ``serve(create_app)``: one way to start all
services, with the one worker + threads model explained in :mod:`homelab_common.gunicorn_conf`.

Memory: this module does not import flask, so the gunicorn master (which only supervises) does not load the web
stack unless the service's own ``main`` does; the worker imports it when it builds the app. Before forking, the
master's objects are frozen (``gc.freeze``) so the worker's garbage collector does not write to them and the
pages stay shared instead of being copied (lower PSS of master + worker).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from homelab_common import gunicorn_conf
from homelab_common.logs import JsonFormatter

if TYPE_CHECKING:
    from flask import Flask


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
    )
    options.update(overrides)
    return options


def serve(factory: Callable[[], Flask], service: str = "homelab", **overrides: Any) -> None:
    """Serve ``factory()`` until SIGTERM; the app is built in the worker so its threads start there."""
    application = _Gunicorn(factory, gunicorn_options(proc_name=service, **overrides))
    gc.collect()
    gc.freeze()  # see the module docstring
    application.run()
