"""Test helpers every service's test suite uses (dev dependencies are imported lazily).

``api_schema(app)`` loads a service's own ``/openapi.json`` for schemathesis, so each service fuzzes its API with
one fixture and one test::

    @pytest.fixture
    def api(app):
        return api_schema(app)

    schema = schemathesis.pytest.from_fixture("api")

    @schema.parametrize()
    def test_api_conforms_to_its_openapi(case):
        case.call_and_validate()
"""

from __future__ import annotations

import socket
from typing import Any

from flask import Flask


def api_schema(app: Flask) -> Any:
    """The app's OpenAPI document as a schemathesis schema, called in-process through WSGI."""
    import schemathesis  # a dev dependency, absent from service images

    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def free_port() -> int:
    """A port on 127.0.0.1 free for both TCP and UDP at the time of asking (servers here often serve both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port on 127.0.0.1 is free for both TCP and UDP")
