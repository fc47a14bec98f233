"""The Day 2 pipeline (.woodpecker/) against Woodpecker's JSON schema, and what it runs.

The schema is the one check-jsonschema vendors (``vendor.woodpecker-ci``, from SchemaStore, which takes it from
woodpecker-ci/woodpecker's pipeline/frontend/yaml/linter/schema/schema.json), installed from PyPI with the dev
tools: no copy of ours to go stale.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PIPELINES = sorted((REPO / ".woodpecker").glob("*.yaml"))


def _schema() -> dict[str, Any]:
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("woodpecker-ci.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _errors(pipeline: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(pipeline)]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_images_pipeline_exists() -> None:
    assert REPO / ".woodpecker" / "images.yaml" in PIPELINES


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_pipeline_is_valid_against_woodpeckers_schema(path: Path) -> None:
    assert _errors(_load(path)) == []


def test_the_schema_rejects_what_woodpecker_would() -> None:
    """The validation has teeth: a step without an image, an unknown key, a misspelt event are errors."""
    pipeline = _load(REPO / ".woodpecker" / "images.yaml")
    no_image = json.loads(json.dumps(pipeline))
    del no_image["steps"][0]["image"]
    unknown = {**pipeline, "stages": []}
    bad_event = {**pipeline, "when": [{"event": "pushed"}]}
    for broken in (no_image, unknown, bad_event):
        assert _errors(broken), broken


def test_pipeline_builds_on_push_and_pushes_with_the_secret_credential() -> None:
    pipeline = _load(REPO / ".woodpecker" / "images.yaml")
    assert pipeline["when"] == [{"event": "push", "branch": "${CI_REPO_DEFAULT_BRANCH}"}]
    (step,) = pipeline["steps"]
    env = step["environment"]
    # the credential comes from Woodpecker's secrets, never from the file
    assert env["HOMELAB_REGISTRY_USERNAME"] == {"from_secret": "registry_username"}
    assert env["HOMELAB_REGISTRY_PASSWORD"] == {"from_secret": "registry_password"}
    # the in-cluster registry's Service (the docker-registry subchart of gitops/platform/registry, port 5000)
    assert env["HOMELAB_REGISTRY"] == "registry-docker-registry.registry.svc.cluster.local:5000"
    assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", step["image"]), "an upstream image pinned by tag"
    assert step["commands"][-1] == "./task images:push"
    task = yaml.safe_load((REPO / "Taskfile.yml").read_text(encoding="utf-8"))["tasks"]["images:push"]
    (command,) = task["cmds"]
    assert 'homelab_bootstrap.images --push "$HOMELAB_REGISTRY"' in command
    # every script the step runs is in the repository
    for line in step["commands"]:
        script = line.split()[0]
        assert (REPO / script).is_file(), script
