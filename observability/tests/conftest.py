from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from rulefiles import render_rule_files
from stack import Stack, get_json, http_status, running, wait_until

from homelab_common.k8s.testing import KubeEmulator


@pytest.fixture(scope="session")
def rule_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return render_rule_files(tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="session")
def stack(rule_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Our services, Alertmanager and Prometheus on loopback, scraped at least twice and every rule evaluated."""
    tmp = tmp_path_factory.mktemp("stack")
    with _RUNNING:
        kube = _RUNNING.enter_context(KubeEmulator())
        stack = _RUNNING.enter_context(running(tmp, kube, list(rule_files.values())))
        for _ in range(3):  # API traffic: scrapes and probes are not what the SLIs count
            for name in stack.ports:
                assert http_status(f"{stack.url(name)}/openapi.json") == 200
        wait_until("two scrapes of every target", lambda: _scraped_twice(stack), procs=stack.procs)
        wait_until("every rule group evaluated", lambda: _evaluated(stack), procs=stack.procs)
        wait_until("homepage's first probe", lambda: stack.query("homelab_homepage_apps_by_status"))
        yield stack


#: What the stack runs (the emulator, six services, Prometheus, Alertmanager); closed after the last test here
_RUNNING = contextlib.ExitStack()
_HERE = Path(__file__).parent


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the stack once the last observability test is done, not at the end of the session: the tests after
    these (VMs under TCG, image runs) need the CPU its processes would keep using."""
    if nextitem is None or _HERE not in nextitem.path.parents:
        _RUNNING.close()


def _scraped_twice(stack: Stack) -> bool:
    targets = get_json(f"{stack.prometheus}/api/v1/targets")["data"]["activeTargets"]
    up = len(targets) == len(stack.ports) and all(t["health"] == "up" for t in targets)
    return up and bool(stack.query('count_over_time(up{namespace="dns"}[1m]) >= 2'))


def _evaluated(stack: Stack) -> bool:
    groups = get_json(f"{stack.prometheus}/api/v1/rules")["data"]["groups"]
    return all(not g["lastEvaluation"].startswith("0001") for g in groups)
