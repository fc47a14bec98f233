"""`homelab-bootstrap`: the command behind `task configure`, `task up` and the in-cluster bootstrap Job.

Subcommands: ``configure`` (write the site file), ``up`` (all stages from the controller), ``assets`` (the
installer assets stage alone), ``job`` (the bootstrap steps alone, as the Kubernetes Job runs them), ``render``
(write the generated values-site.yaml files into a tree).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from kubernetes.client.exceptions import ApiException

from homelab_bootstrap import assets, configure, gitops, job, up
from homelab_bootstrap.gitserve import GitHttpBackend, GitHttpServer
from homelab_bootstrap.kube import Kube
from homelab_bootstrap.lab.commands import LabError
from homelab_bootstrap.seed import REPO_NAME, SeedRepo
from homelab_common.k8s import KubeConfigError
from homelab_common.site import SiteError, load_site

GITEA_CLUSTER_URL = job.GITEA_CLUSTER_URL
SOURCE = Path(os.environ.get("HOMELAB_SOURCE", Path.cwd()))


def _tool(name: str) -> str:
    local = SOURCE / ".cache" / "bin" / name
    return str(local) if local.is_file() else name


def _kube(kubeconfig: Path | None) -> Kube:
    from homelab_common.k8s import load_client

    return Kube(load_client(str(kubeconfig) if kubeconfig else None))


@contextlib.contextmanager
def port_forward(kubeconfig: Path, namespace: str, service: str, port: int) -> Iterator[str]:
    """``kubectl port-forward`` to a Service; yields its local URL (Gitea is not reachable from the LAN by name)."""
    proc = subprocess.Popen(
        [
            _tool("kubectl"),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            namespace,
            "port-forward",
            f"svc/{service}",
            f":{port}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            raise job.BootstrapError(f"kubectl port-forward to {namespace}/{service} failed: {line.strip()}")
        yield f"http://127.0.0.1:{match[1]}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cmd_configure(args: argparse.Namespace) -> int:
    return configure.configure(args, sys.stdin, sys.stdout)


def cmd_render(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    for path in gitops.write_values(Path(args.tree), site):
        print(f"render: wrote {path}")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    """In the cluster: the repository is cloned from ``--repo-url`` (the controller) and moved into Gitea."""
    site_path = Path(args.site)
    site = load_site(site_path)
    ctx = job.Context(
        site=site,
        site_text=site_path.read_text(encoding="utf-8"),
        source=SOURCE,
        state=Path(args.state),
        kube=_kube(None),
        helm=_tool("helm"),
        repo_url=args.repo_url,
        gitea=job.GiteaTarget(url=args.gitea_url, cluster_url=args.gitea_url) if args.gitea_url else None,
        poll=args.poll_seconds,
    )
    # Argo CD is installed by `task up` from the controller (helm needs far wider rights than this Job has)
    job.run(ctx, [s for s in job.STEPS if s[0] != "argocd"])
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    site_path = Path(args.site)
    if not site_path.is_file() and sys.stdin.isatty():
        print(f"up: no site file at {site_path}; starting the configuration wizard (./task configure)")
        ns = argparse.Namespace(site=str(site_path), non_interactive=False, force=False)
        code = configure.configure(ns, sys.stdin, sys.stdout)
        if code != 0:
            return code
    state = Path(args.state).resolve()  # absolute: it reaches subprocesses (dnsmasq changes directory at start)
    opts = up.Options(
        site_path=site_path,
        state=state,
        source=SOURCE,
        kubeconfig=Path(args.kubeconfig).resolve() if args.kubeconfig else None,
        lab=args.lab,
        helm=_tool("helm"),
        autoinstall_url=args.autoinstall_url,
        ssh_user=args.ssh_user,
    )
    try:
        site = up.preflight(opts)
    except up.PreflightError as exc:
        print(f"up: preflight: {exc}", file=sys.stderr)
        return 2
    kubeconfig = up.kubeconfig_path(opts)
    byo = opts.kubeconfig is not None
    seed = SeedRepo(state)
    seed.served.mkdir(parents=True, exist_ok=True)
    try:
        server = GitHttpServer(GitHttpBackend(seed.served), host="0.0.0.0", port=args.git_port)
    except OSError as exc:
        print(f"up: cannot serve the GitOps repository on port {args.git_port}: {exc.strerror}", file=sys.stderr)
        return 2
    advertised = args.advertise or up.controller_address(site)

    def context() -> job.Context:
        return job.Context(
            site=site,
            site_text=site_path.read_text(encoding="utf-8"),
            source=SOURCE,
            state=state,
            kube=_kube(kubeconfig),
            helm=_tool("helm"),
            repo_url=f"http://{advertised}:{server.port}/{REPO_NAME}",
        )

    steps = [s for s in job.STEPS if s[0] not in ("wait", "gitea")]

    def bootstrap() -> None:
        ctx = context()
        if not job.on_gitea(ctx):
            job.run(ctx, steps)
            return
        # already moved into Gitea: a changed site file is pushed there, and the root stays on Gitea
        with port_forward(kubeconfig, "gitea", "gitea-http", 3000) as url:
            ctx.gitea = job.GiteaTarget(url=url, cluster_url=GITEA_CLUSTER_URL)
            job.run(ctx, steps)

    def apps() -> None:
        ctx = context()
        job.wait_apps(ctx, {"gitea"})
        with port_forward(kubeconfig, "gitea", "gitea-http", 3000) as url:
            ctx.gitea = job.GiteaTarget(url=url, cluster_url=GITEA_CLUSTER_URL)
            job.run(ctx, [s for s in job.STEPS if s[0] == "gitea"])
        job.run(ctx, [s for s in job.STEPS if s[0] == "wait"])

    stages = [
        up.Stage(
            "assets",
            lambda: "bring-your-own cluster (--kubeconfig)" if byo else up.metal_done(site, lab=opts.lab),
            lambda: up.run_assets(opts, site),
        ),
        up.Stage(
            "metal",
            lambda: "bring-your-own cluster (--kubeconfig)" if byo else up.metal_done(site, lab=opts.lab),
            lambda: up.run_metal(opts, site),
        ),
        up.Stage(
            "cluster",
            lambda: "bring-your-own cluster (--kubeconfig)" if byo else up.cluster_done(opts, site),
            lambda: up.run_cluster(opts, site),
        ),
        # never skipped: each step is a no-op when done, and a changed site file must still reach the repository
        up.Stage("bootstrap", lambda: None, bootstrap),
        up.Stage("apps", lambda: job.apps_done(context(), GITEA_CLUSTER_URL), apps),
    ]
    if opts.lab and not byo:
        # The lab's machines run the stand-in installer (a real Ubuntu install and k3s need the internet and, to
        # finish in reasonable time, KVM): its metal stage is the whole of what it can prove.
        stages = stages[:2]
    elif not byo:
        # Day 0 images: built (or reused: tags follow their inputs) before the machines install, so autoinstall
        # serves them and every node imports them into k3s (homelab_bootstrap.images).
        stages.insert(0, up.Stage("images", lambda: None, lambda: up.build_images(opts)))
    try:
        with server, opts.cleanup:
            try:
                up.run_stages(stages, print, state / "up-timings.json")
            except (
                job.BootstrapError,
                up.PreflightError,
                RuntimeError,
                SiteError,
                KubeConfigError,
                LabError,
                OSError,
            ) as exc:
                print(f"up: {up.error_line(exc, state)}", file=sys.stderr)
                return 1
            except ApiException as exc:
                print(f"up: the Kubernetes API refused a request: {exc.status} {exc.reason}", file=sys.stderr)
                return 1
    except KeyboardInterrupt as exc:  # after the with: the server and the lab are stopped by now
        print(up.interrupted(getattr(exc, "stage", None), opts), file=sys.stderr)
        return 130
    if opts.lab and not byo:
        print(
            f"up: virtual lab: {len(site.machines)} machine(s) PXE-booted from the installer assets (the lab's "
            "signed stand-in ISO) and installed through pxe + autoinstall. "
            "It stops here: its installer is a stand-in that cannot install Ubuntu or k3s. For a cluster, run "
            "./task up against real machines, or bring one: ./task up -- --kubeconfig FILE"
        )
        return 0
    print("\n".join(up.summary(site, opts)))
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    """The installer assets stage alone (what ``up`` runs before waking machines)."""
    site = load_site(args.site)
    state = Path(args.state).resolve()
    opts = up.Options(site_path=Path(args.site), state=state, source=SOURCE)
    try:
        up.run_stages([up.Stage("assets", lambda: None, lambda: up.run_assets(opts, site))], print,
                      state / "assets-timings.json")  # fmt: skip
    except assets.AssetsError as exc:
        print(f"assets: {up.error_line(exc, state)}", file=sys.stderr)
        return 1
    print(f"assets: pxe serves them from {up.assets_dir(opts)}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="homelab-bootstrap", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("configure", help="write the site file (interactive, or --non-interactive with flags)")
    configure.add_arguments(p)
    p.set_defaults(func=cmd_configure)
    p = sub.add_parser("up", help="metal -> cluster -> bootstrap -> apps")
    p.add_argument(
        "--site",
        default="site.yaml",
        help="the site file (default: site.yaml; at a terminal, the configuration wizard writes it when missing)",
    )
    p.add_argument(
        "--state",
        default=".cache/homelab",
        help="where up keeps its state: kubeconfig, logs, the GitOps repository, timings (default: .cache/homelab)",
    )
    p.add_argument("--kubeconfig", help="bring your own cluster: skip metal and cluster")
    p.add_argument("--lab", action="store_true", help="virtual lab: QEMU machines instead of hardware")
    p.add_argument(
        "--autoinstall-url",
        default="http://127.0.0.1:8081",
        help="where up reaches the autoinstall service it starts on this controller (default: %(default)s)",
    )
    p.add_argument(
        "--git-port",
        type=int,
        default=up.GIT_PORT,
        help="port on which this controller serves the GitOps repository to the cluster (default: %(default)s)",
    )
    p.add_argument("--ssh-user", default="homelab", help="admin user on the machines (autoinstall's username)")
    p.add_argument("--advertise", help="controller address the cluster clones from (default: detected)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("assets", help="download, verify and lay out the Ubuntu installer for pxe (up runs it too)")
    p.add_argument("--site", default="site.yaml", help="the site file (installer.<arch> pins the release)")
    p.add_argument("--state", default=".cache/homelab", help="state directory: installer-cache/ and pxe-assets/")
    p.set_defaults(func=cmd_assets)
    p = sub.add_parser("job", help="the bootstrap steps, as the in-cluster Job runs them")
    p.add_argument("--site", default="/etc/homelab/site.yaml", help="the site file (default: %(default)s)")
    p.add_argument("--state", default="/var/lib/homelab-bootstrap", help="the Job's work folder (default: %(default)s)")
    p.add_argument("--repo-url", help="the GitOps repository Argo CD reads now (the controller's server)")
    p.add_argument("--gitea-url", help="Gitea's in-cluster URL, e.g. http://gitea-http.gitea.svc:3000")
    p.add_argument("--poll-seconds", type=float, default=10.0, help="how often to look at the Applications")
    p.set_defaults(func=cmd_job)
    p = sub.add_parser("render", help="write values-site.yaml into every app folder of a tree")
    p.add_argument("--site", default="site.yaml", help="the site file (default: site.yaml)")
    p.add_argument("--tree", default=".", help="a copy of this repository to write into (default: .)")
    p.set_defaults(func=cmd_render)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print(f"\nhomelab-bootstrap {args.command}: stopped (Ctrl-C); run it again to resume", file=sys.stderr)
        return 130
    except SiteError as exc:
        print(f"homelab-bootstrap: {exc}", file=sys.stderr)
        return 2
    except job.BootstrapError as exc:
        print(f"homelab-bootstrap: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
