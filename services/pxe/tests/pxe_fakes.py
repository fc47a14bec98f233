"""A small fake autoinstall: a real werkzeug server on 127.0.0.1 serving the contract's ``/api/v1/boot/{mac}``."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.serving import make_server


class FakeAutoinstall:
    """``answers`` maps a lowercase colon MAC to the JSON body; a MAC not in it gets 404; ``status`` forces one."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.status: int | None = None
        self.requests: list[str] = []
        app = Flask("fake-autoinstall")

        @app.get("/api/v1/boot/<mac>")
        def boot(mac: str) -> Response | tuple[Response, int]:
            self.requests.append(mac)
            if self.status is not None:
                return jsonify({"error": "forced"}), self.status
            if mac not in self.answers:
                return jsonify({"error": "not_found", "message": f"{mac} is not in the inventory"}), 404
            answer = self.answers[mac]
            if isinstance(answer, str):
                return Response(answer, mimetype="application/json")
            return jsonify(answer)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeAutoinstall:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
