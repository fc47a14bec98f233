"""Rotation hooks for Gitea's and Grafana's admin passwords, against CONTRACT FAKES of their admin APIs
(secrets_fakes.py: the documented calls and answers, not the real apps, which cannot run here).

The app is changed first with the current password, and only then is the Secret swapped; a refused or failed
change leaves the old value in place with a Warning Event and the hook-failure metric (the alert's input); a hook
that fails half way (the app took the new password but its reply was lost, or the Secret write after it failed) is
finished on the next pass instead of locking anyone out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from secrets_fakes import FakeGitea, FakeGrafana
from secrets_helpers import OURS, Clock, annotations, create_secret, events, running, settle, values

from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_secrets import spec as ann
from homelab_secrets.core import HookCall
from homelab_secrets.hooks import GiteaHook, GrafanaHook, HookError


def failures(hook: str) -> float:
    return REGISTRY.get_sample_value("homelab_secrets_hook_failures_total", {"hook": hook}) or 0.0


@pytest.fixture
def gitea() -> Iterator[FakeGitea]:
    with FakeGitea("gitea-admin", "initial") as fake:
        yield fake


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana("admin", "initial") as fake:
        yield fake


def hooked(url: str, hook: str, username_key: str) -> dict[str, str]:
    return {
        OURS + "generate": "password" if hook == "gitea" else "admin-password",
        OURS + "rotate-every": "720h",
        OURS + "hook": hook,
        OURS + "hook-url": url,
        OURS + "hook-username-key": username_key,
    }


def test_gitea_password_is_changed_in_the_app_before_the_secret(kube: KubeEmulator, gitea: FakeGitea) -> None:
    clock = Clock()
    create_secret(kube, "gitea-admin", hooked(gitea.url, "gitea", "username"), data={"username": b"gitea-admin"})
    with running(kube, clock) as controller:
        wait_for(lambda: "password" in values(kube, "gitea-admin"))
        first = values(kube, "gitea-admin")["password"].decode()
        gitea.users["gitea-admin"] = first  # Gitea started with the generated password
        clock.advance(720 * 3600)
        settle(controller)
        wait_for(lambda: "password.previous" in values(kube, "gitea-admin"))
    now = values(kube, "gitea-admin")
    assert now["password.previous"].decode() == first
    assert gitea.users["gitea-admin"] == now["password"].decode() != first
    assert "password.pending" not in now
    assert gitea.calls.index("PATCH /api/v1/admin/users/gitea-admin") > gitea.calls.index("GET /api/v1/user")
    assert annotations(kube, "gitea-admin")[ann.STATUS] == "ok"


def test_grafana_password_is_changed_in_the_app_before_the_secret(kube: KubeEmulator, grafana: FakeGrafana) -> None:
    clock = Clock()
    notes = hooked(grafana.url, "grafana", "admin-user")
    create_secret(kube, "grafana-admin", notes, data={"admin-user": b"admin"})
    with running(kube, clock) as controller:
        wait_for(lambda: "admin-password" in values(kube, "grafana-admin"))
        grafana.users["admin"] = values(kube, "grafana-admin")["admin-password"].decode()
        clock.advance(720 * 3600)
        settle(controller)
        wait_for(lambda: "admin-password.previous" in values(kube, "grafana-admin"))
    assert grafana.users["admin"] == values(kube, "grafana-admin")["admin-password"].decode()
    assert grafana.changes == 1


def test_a_refused_change_keeps_the_old_value_with_an_event_and_the_metric(
    kube: KubeEmulator, gitea: FakeGitea
) -> None:
    clock = Clock()
    before = failures("gitea")
    create_secret(kube, "gitea-admin", hooked(gitea.url, "gitea", "username"), data={"username": b"gitea-admin"})
    with running(kube, clock) as controller:
        wait_for(lambda: "password" in values(kube, "gitea-admin"))
        first = values(kube, "gitea-admin")["password"]
        gitea.users["gitea-admin"] = first.decode()
        gitea.fail_change = 500
        clock.advance(720 * 3600)
        settle(controller)
        wait_for(lambda: events(kube, "RotationHookFailed"))
        assert values(kube, "gitea-admin")["password"] == first  # the app still has it: so does the Secret
        assert gitea.users["gitea-admin"] == first.decode()
        assert annotations(kube, "gitea-admin")[ann.STATUS].startswith("error: rotation hook failed: gitea:")
        assert failures("gitea") == before + 1
        # after the retry delay (60 s here) the app accepts again and the rotation completes
        gitea.fail_change = None
        clock.advance(61)
        settle(controller)
        wait_for(lambda: "password.previous" in values(kube, "gitea-admin"))
    assert gitea.users["gitea-admin"] == values(kube, "gitea-admin")["password"].decode()
    note = events(kube, "RotationHookFailed")[0]["note"]
    assert first.decode() not in note


def test_the_app_took_the_change_but_the_secret_write_failed(kube: KubeEmulator, gitea: FakeGitea) -> None:
    """Half way: Gitea has the new password, the Secret write right after fails; the next pass finishes it."""
    clock = Clock()
    create_secret(kube, "gitea-admin", hooked(gitea.url, "gitea", "username"), data={"username": b"gitea-admin"})
    with running(kube, clock) as controller:
        wait_for(lambda: "password" in values(kube, "gitea-admin"))
        first = values(kube, "gitea-admin")["password"].decode()
        gitea.users["gitea-admin"] = first
        gitea.after_change = lambda: kube.fail("update", "secrets", status=500, times=1)
        clock.advance(720 * 3600)
        settle(controller)
        wait_for(lambda: gitea.changes == 1)
        wait_for(lambda: "password.previous" in values(kube, "gitea-admin"))
        assert kube.pending_faults() == 0  # the write after the change did fail once
    final = values(kube, "gitea-admin")
    assert final["password"].decode() == gitea.users["gitea-admin"] != first
    assert final["password.previous"].decode() == first
    assert gitea.changes == 1  # finished by proving the new password, not by changing it twice


def test_a_lost_reply_after_the_change_counts_as_done(gitea: FakeGitea) -> None:
    gitea.lose_reply = True
    GiteaHook()(HookCall("gitea", gitea.url, "gitea-admin", b"initial", b"next-password"))
    assert gitea.users["gitea-admin"] == "next-password"


def test_a_password_changed_outside_is_an_error_that_says_so(grafana: FakeGrafana) -> None:
    grafana.users["admin"] = "set-by-hand"
    with pytest.raises(HookError, match="neither the current nor the new password signs in as admin"):
        GrafanaHook()(HookCall("grafana", grafana.url, "admin", b"initial", b"next-password"))


def test_an_unreachable_app_is_a_hook_error() -> None:
    with pytest.raises(HookError, match="cannot connect"):
        GiteaHook(timeout=2)(HookCall("gitea", "http://127.0.0.1:9", "gitea-admin", b"a", b"b"))
