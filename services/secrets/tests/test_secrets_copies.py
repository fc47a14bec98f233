"""Copies kept in step (``copy-to`` on the Secret, ``copy-of`` on the copy), against the emulated Kubernetes API.

The case they exist for: Argo CD's repository credential (``argocd/homelab-gitops-repo``, made by the bootstrap)
holds Gitea's admin login, so gitea-admin can rotate only if that copy follows. The Gitea side is the contract fake
of its admin API (secrets_fakes; NOT the real Gitea).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from secrets_fakes import FakeGitea
from secrets_helpers import OURS, Clock, create_secret, events, running, settle, values

from homelab_common.k8s.testing import KubeEmulator, wait_for
from homelab_secrets import spec as ann
from homelab_secrets.spec import SpecError, parse

REPO = {"type": b"git", "url": b"http://gitea-http.gitea.svc:3000/homelab/gitops.git", "username": b"gitea-admin"}


@pytest.fixture
def gitea() -> Iterator[FakeGitea]:
    with FakeGitea("gitea-admin", "initial") as fake:
        yield fake


def gitea_admin(url: str, copy_to: str = "argocd/homelab-gitops-repo") -> dict[str, str]:
    return {
        OURS + "generate": "password",
        OURS + "rotate-every": "720h",
        OURS + "hook": "gitea",
        OURS + "hook-url": url,
        OURS + "hook-username-key": "username",
        OURS + "copy-to": copy_to,
        OURS + "copy-keys": "username,password",
    }


def test_the_repository_credential_follows_a_rotation_through_the_gitea_hook(
    kube: KubeEmulator, gitea: FakeGitea
) -> None:
    clock = Clock()
    create_secret(kube, "gitea-admin", gitea_admin(gitea.url), data={"username": b"gitea-admin"}, namespace="gitea")
    copy_of = {ann.COPY_OF: "gitea/gitea-admin"}
    create_secret(kube, "homelab-gitops-repo", copy_of, data=REPO, namespace="argocd")
    with running(kube, clock) as controller:
        wait_for(lambda: "password" in values(kube, "gitea-admin", "gitea"))
        first = values(kube, "gitea-admin", "gitea")["password"]
        gitea.users["gitea-admin"] = first.decode()  # Gitea started with the generated password
        wait_for(lambda: values(kube, "homelab-gitops-repo", "argocd").get("password") == first)
        clock.advance(720 * 3600)
        settle(controller)
        wait_for(lambda: "password.previous" in values(kube, "gitea-admin", "gitea"))
        new = values(kube, "gitea-admin", "gitea")["password"]
        wait_for(lambda: values(kube, "homelab-gitops-repo", "argocd").get("password") == new)
        writes = kube.request_count("update", "secrets")
        for _ in range(3):
            settle(controller)  # in step: a rerun writes nothing
        assert kube.request_count("update", "secrets") == writes
    repo = values(kube, "homelab-gitops-repo", "argocd")
    assert gitea.users["gitea-admin"] == new.decode() != first.decode()
    assert repo == REPO | {"password": new}  # only the copied keys change; no .previous, no status
    assert {e["regarding"]["name"] for e in events(kube, "Copied")} == {"homelab-gitops-repo"}
    assert all(first.decode() not in e["note"] and new.decode() not in e["note"] for e in events(kube, "Copied"))


def test_a_copy_is_written_only_where_it_names_its_source(kube: KubeEmulator) -> None:
    notes = {OURS + "generate": "password", OURS + "copy-to": "other/taken,other/absent"}
    create_secret(kube, "source", notes)
    partial = {OURS + "generate": "password", OURS + "copy-to": "other/plain", OURS + "copy-keys": "password,user"}
    create_secret(kube, "partial", partial)
    create_secret(kube, "taken", {ann.COPY_OF: "apps/someone-else"}, data={"password": b"theirs"}, namespace="other")
    copy_of = {ann.COPY_OF: "apps/partial"}  # it agrees, but half a login is never copied
    create_secret(kube, "plain", copy_of, data={"password": b"theirs"}, namespace="other")
    with running(kube) as controller:
        wait_for(lambda: "password" in values(kube, "source"))
        wait_for(lambda: events(kube, "CopyRefused") and events(kube, "CopyMissing") and events(kube, "CopyKeyMissing"))
        settle(controller)
        settle(controller)
    assert values(kube, "taken", "other") == {"password": b"theirs"}
    assert values(kube, "plain", "other") == {"password": b"theirs"}
    assert "absent" not in str(kube.objects("v1/secrets", "other").keys())  # a copy is never created
    once = [len(events(kube, reason)) for reason in ("CopyRefused", "CopyMissing", "CopyKeyMissing")]
    assert once == [1, 1, 1]  # once each, not on every pass


def test_copy_annotations_are_read_exactly() -> None:
    spec = parse({OURS + "generate": "password", OURS + "copy-to": "argocd/repo"})
    assert spec.copy_to == ("argocd/repo",)
    assert spec.copy_keys == ("password",)
    for bad, where in (
        ({OURS + "copy-to": "repo"}, "copy-to"),
        ({OURS + "copy-to": "Argo/repo"}, "copy-to"),
        ({OURS + "copy-keys": "password"}, "copy-keys"),
        ({OURS + "copy-to": "argocd/repo", OURS + "copy-keys": "password.previous"}, "copy-keys"),
    ):
        with pytest.raises(SpecError, match=where):
            parse({OURS + "generate": "password"} | bad)
