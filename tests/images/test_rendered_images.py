"""Every image a chart or an app wrapper renders is ours at its pinned tag, or an upstream one pinned by tag.

Ours: ``homelab.internal/homelab/<name>:<tag>`` where the tag is the one `task images` derives from the current
tree (computed here without building: it is a digest of the inputs), so the charts can never point at an image
that was not built from what is in git. The wrappers are rendered as tests/gitops does: with the example site's
generated values and their remote (upstream) chart dependencies stripped, since those cannot be downloaded here;
the upstream charts themselves are pinned by version in each wrapper's Chart.yaml (tests/gitops checks that).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chart_harness import REPO, Document, pod_templates, render_chart
from homelab_bootstrap import gitops, images
from homelab_bootstrap.seed import vendor_local_dependencies
from homelab_common.site import load_site

UPSTREAM = re.compile(r"^[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+$")  # registry/path:tag, the tag explicit


def _expected() -> dict[str, str]:
    _, helm_sha = images._helm(REPO)
    return {f"{images.PREFIX}/{i.name}": images.image_tag(REPO, i, helm_sha) for i in images.discover(REPO)}


def _images(docs: list[Document]) -> list[tuple[str, str]]:
    found = []
    for doc in docs:
        for _, pod in pod_templates(doc):
            for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
                found.append((doc.where(f"container {container['name']}"), container["image"]))
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    found = []
    for chart in sorted((REPO / "charts").glob("*/Chart.yaml")):
        if chart.parent.name != "library":
            found += _images(render_chart(chart.parent))
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(REPO / "gitops", root / "gitops")
    shutil.copytree(REPO / "charts", root / "charts")
    gitops.write_values(root, load_site(REPO / "site.example.yaml"))
    vendor_local_dependencies(root)
    for app in gitops.discover_apps(REPO):
        chart = root / app.path
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        meta["dependencies"] = [d for d in meta.get("dependencies") or [] if str(d["repository"]).startswith("file://")]
        if not meta["dependencies"]:
            del meta["dependencies"]
        (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
        found += _images(render_chart(chart, [chart / gitops.VALUES_FILE], release=app.name, namespace=app.namespace))
    return found


def test_every_rendered_image_is_ours_or_pinned_upstream(rendered: list[tuple[str, str]]) -> None:
    expected = _expected()
    problems = []
    ours = set()
    for where, image in rendered:
        repository, _, tag = image.rpartition(":")
        if repository in expected:
            ours.add(repository)
            if tag != expected[repository]:
                problems.append(f"{where}: {image}, but the tree builds {repository}:{expected[repository]}")
        elif not UPSTREAM.match(image) or tag == "latest" or repository.startswith(images.REGISTRY):
            problems.append(f"{where}: {image} is neither ours nor an upstream image pinned by tag")
    assert not problems, "\n".join(problems) + "\n(run `./task images -- --pin` after changing an image's inputs)"
    assert {f"{images.PREFIX}/{n}" for n in ("autoinstall", "dns", "homepage", "pxe", "bootstrap")} <= ours


def test_nothing_refers_to_the_placeholder_registry() -> None:
    out = subprocess.run(
        ["git", "-C", str(REPO), "grep", "-n", "registry.example", "--", "gitops", "charts"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.stdout == "", out.stdout


def test_pin_writes_the_tag_after_the_repository(tmp_path: Path) -> None:
    values = tmp_path / "charts" / "dns" / "values.yaml"
    values.parent.mkdir(parents=True)
    values.write_text(f"image:\n  repository: {images.PREFIX}/dns\n  tag: old\nother: 1\n")
    changed = images.pin(tmp_path, [{"name": "dns", "tag": "abc123"}], lambda _: None)
    assert changed == [values]
    assert yaml.safe_load(values.read_text()) == {
        "image": {"repository": f"{images.PREFIX}/dns", "tag": "abc123"},
        "other": 1,
    }
