"""The health check that makes the tiers wait for each other, run in Lua 5.1 (Argo CD runs gopher-lua, Lua 5.1).

The root Application syncs the system, platform and apps ApplicationSets in sync waves; a wave waits until the
previous one's resources are Healthy, and an ApplicationSet has no health of its own in Argo CD. This check (in
gitops/system/argocd/values.yaml) makes it Healthy only when every Application it generated is Synced and Healthy.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KEY = "resource.customizations.health.argoproj.io_ApplicationSet"


def _lua(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = shutil.which("lua5.1")
    if lua is None:
        pytest.fail("lua5.1 is not installed: run ./task deps (scripts/test-debs.txt)")
    values = yaml.safe_load((REPO / "gitops/system/argocd/values.yaml").read_text())
    script = values["argo-cd"]["configs"]["cm"][KEY]
    program = f"obj = {_lua(obj)}\nlocal function check()\n{script}\nend\n"
    program += "local hs = check()\nio.write(hs.status, '|', hs.message)\n"
    proc = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    status, _, message = proc.stdout.partition("|")
    return status, message


def _appset(*resources: tuple[str, str, str]) -> dict[str, Any]:
    items = [{"kind": "Application", "name": n, "status": s, "health": {"status": h}} for n, s, h in resources]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "status": {"resources": items}}


def test_an_applicationset_without_status_is_progressing() -> None:
    assert _health({"kind": "ApplicationSet"})[0] == "Progressing"


def test_healthy_only_when_every_generated_application_is_synced_and_healthy() -> None:
    assert _health(_appset(("argocd", "Synced", "Healthy"), ("kured", "Synced", "Healthy")))[0] == "Healthy"


@pytest.mark.parametrize(
    ("resources", "named"),
    [
        ((("argocd", "Synced", "Healthy"), ("kured", "Synced", "Progressing")), "kured"),
        ((("gitea", "OutOfSync", "Healthy"),), "gitea"),
        ((("loki", "Synced", "Degraded"), ("alloy", "Synced", "Healthy")), "loki"),
    ],
)
def test_any_pending_application_keeps_the_tier_progressing_and_is_named(
    resources: tuple[tuple[str, str, str], ...], named: str
) -> None:
    status, message = _health(_appset(*resources))
    assert status == "Progressing"
    assert message.startswith(named)
