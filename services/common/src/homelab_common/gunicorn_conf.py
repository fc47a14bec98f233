"""gunicorn settings shared by every service image: ``gunicorn -c python:homelab_common.gunicorn_conf APP``.

One worker process with threads: services keep in-memory state (watch caches, leases, a DNS zone), which must
not be split across processes; the work per request is small and mostly I/O.
"""

import os

bind = os.environ.get("HOMELAB_HTTP_BIND", "0.0.0.0:8080")
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("HOMELAB_HTTP_THREADS", "8"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None  # the app logs each request as JSON itself
errorlog = "-"
worker_tmp_dir = "/tmp"  # noqa: S108 - the read-only root FS leaves only the /tmp emptyDir writable
forwarded_allow_ips = os.environ.get("HOMELAB_HTTP_FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn >= 25 opens a control socket (worker management for `gunicornc`) under $HOME from an asyncio thread
# in the master; nothing uses it, $HOME is read-only in the images, and it is one more way in: off.
control_socket_disable = True
