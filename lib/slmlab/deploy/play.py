"""`slmlab deploy play DIR`: `podman kube play` of the bundle's own Deployments, with a Secret holding a fresh API
key (mounted as a file, as in a cluster) and the gateway's ConfigMap. What podman on one machine needs changed
is changed in the played copies only, and listed (`BundlePlay.changes`): the ConfigMap's upstream URL is the
engine pod's address (podman runs no Services), each Deployment runs one replica, and its ports are published
on 127.0.0.1 (`BundlePlay.played_deployment`). The securityContext, resources, probes, volumes, args and
environment are played as rendered. Services, the HPA, PodDisruptionBudgets, NetworkPolicies and RBAC are not run
(`NOT_PLAYED` says why); `slmlab deploy check` validates them. Everything is removed on exit (`kube down`, the
secret and its volume).
"""

from __future__ import annotations

import copy
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmlab.containers.kube import NOT_PLAYED, KubePlay, PlayedPod, podman_version, secret_document
from slmlab.containers.run import Network
from slmlab.containers.runtime import Runtime, last_lines
from slmlab.deploy import k8s
from slmlab.deploy.render import bundle_plan
from slmlab.deploy.run import ready_path
from slmlab.deploy.templating import names
from slmlab.errors import SlmLabError
from slmlab.process import HOST, free_port


def not_played(manifests: Sequence[k8s.Manifest]) -> list[tuple[str, str]]:
    """(Kind/name, why podman does not run it) for every object of the bundle podman skips."""
    return [(m.subject, NOT_PLAYED.get(m.kind, "podman does not play this kind")) for m in manifests
            if m.kind not in ("Deployment", "ConfigMap")]


def _yaml(documents: Sequence[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump_all(list(documents), sort_keys=False)


class BundlePlay:
    """The bundle's engine and gateway Deployments played by podman; removed on exit."""

    def __init__(self, folder: str | Path, runtime: Runtime, components: Sequence[str] = ("engine", "gateway"),
                 startup_timeout: float | None = None, api_key: str | None = None) -> None:
        self.folder, self.runtime, self.components = Path(folder), runtime, tuple(components)
        self.plan = bundle_plan(self.folder)
        self.names = names(self.plan)
        self.manifests = k8s.load_dir(self.folder)
        self.api_key = api_key or secrets.token_hex(24)
        self.startup_timeout = startup_timeout or float(self.plan.engine.startup_seconds)
        self.pods: dict[str, PlayedPod] = {}
        self.ports = {"engine": self.plan.port, "gateway": self._gateway_port()}
        self._plays: list[KubePlay] = []
        self.host_ports: dict[str, int] = {}
        self.changes: list[str] = []  # what the played copies change, and why (see played_deployment)
        self._network = Network(runtime, f"slmlab-{self.names['app']}-kube")
        self._scratch: Path | None = None

    def _gateway_port(self) -> int:
        deploy = self._deployment("gateway")
        return int(deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"])

    def _deployment(self, component: str) -> dict[str, Any]:
        from slmlab.deploy.run import deployment

        return deployment(self.manifests, self.names[component])

    def url(self, component: str) -> str:
        """http://127.0.0.1:<published port> of a played component."""
        return f"http://{HOST}:{self.host_ports[component]}"

    def pod_url(self, component: str) -> str:
        """http://<pod IP>:<container port>: how the other pods reach it on the pod network."""
        return f"http://{self.pods[component].ip}:{self.ports[component]}"

    @property
    def base_url(self) -> str:
        """The gateway's OpenAI-compatible base URL."""
        return self.url("gateway") + "/v1"

    @property
    def commands(self) -> list[list[str]]:
        """The `podman kube play` command lines run so far."""
        return [self.runtime.command(play.args) for play in self._plays]

    def documents(self, component: str, first: bool) -> list[dict[str, Any]]:
        """What one `kube play` gets: the Secret (first play only), the component's ConfigMaps, its Deployment."""
        docs: list[dict[str, Any]] = []
        if first and self.plan.spec.auth == "api-key":
            docs.append(secret_document(self.names["secret"], {"api-key": self.api_key}, podman_version(self.runtime)))
        if component == "gateway":
            for manifest in self.manifests:
                if manifest.kind == "ConfigMap" and manifest.name == self.names["gateway_config"]:
                    config = {**manifest.data, "data": dict(manifest.data.get("data") or {})}
                    if "engine" in self.pods:  # no Services under podman: the engine pod's own address
                        config["data"]["SLMLAB_UPSTREAM_URL"] = self.pod_url("engine") + "/v1"
                        self.changes.append(f"{manifest.name}: SLMLAB_UPSTREAM_URL -> the engine pod's address")
                    docs.append(config)
        return [*docs, self.played_deployment(component)]

    def played_deployment(self, component: str) -> dict[str, Any]:
        """The rendered Deployment with the two changes podman on one machine needs (recorded in `changes`):
        one replica (the copies would share one host and no Service), and each port published on 127.0.0.1 at a
        free port (podman before 4.8 publishes every containerPort on all of the host's interfaces,
        containers/podman#17028)."""
        played = copy.deepcopy(self._deployment(component))
        name = self.names[component]
        if played["spec"].get("replicas", 1) != 1:
            self.changes.append(f"{name}: replicas {played['spec']['replicas']} -> 1")
            played["spec"]["replicas"] = 1
        for box in played["spec"]["template"]["spec"]["containers"]:
            for port in box.get("ports") or []:
                self.host_ports[component] = host = free_port()
                port.update(hostIP=HOST, hostPort=host)
                self.changes.append(f"{name}: port {port['containerPort']} published on {HOST}:{host}")
        return played

    def __enter__(self) -> BundlePlay:
        from slmlab.deploy.run import require_images

        require_images(self.runtime, self.plan, self.components, self.folder)
        self._scratch = Path(tempfile.mkdtemp(prefix="slmlab-play-"))
        self._scratch.chmod(0o700)  # the played Secret is written here
        try:
            self._network.__enter__()
            for i, component in enumerate(self.components):
                self._play(component, first=i == 0)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _play(self, component: str, first: bool) -> None:
        assert self._scratch is not None
        path = self._scratch / f"{component}.yaml"
        path.write_text(_yaml(self.documents(component, first)), encoding="utf-8")
        pod = self._deployment(component)["spec"]["template"]["spec"]
        empty_dirs = tuple(v["name"] for v in pod.get("volumes") or [] if "emptyDir" in v)
        play = KubePlay(self.runtime, path, secrets=(self.names["secret"],), network=self._network.name,
                        timeout=self.startup_timeout, empty_dirs=empty_dirs)
        self._plays.append(play.__enter__())
        found = play.pods(self.names[component] + "-pod")
        if not found:
            raise SlmLabError(f"podman kube play started no pod for {self.names[component]}:\n{play.output}",
                              "Run `podman pod ps -a` to see what it did.")
        self.pods[component] = found[0]
        self._wait_ready(component)

    def _wait_ready(self, component: str) -> None:
        """Poll the readiness probe's path on the pod's address until 200 (a container that stops raises)."""
        url = self.url(component) + ready_path(self._deployment(component))
        begin, box = time.perf_counter(), self.pods[component].containers[0]
        while True:
            try:
                with urllib.request.urlopen(url, timeout=3) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            state = self.runtime.output(["inspect", "--format", "{{.State.Status}}", box], what="Reading a state")
            if state in ("exited", "stopped") or time.perf_counter() - begin > self.startup_timeout:
                logs = self.runtime.run(["logs", "--tail", "15", box], check=False)
                raise SlmLabError(f"{box} ({state}) did not answer its readiness probe {url}:\n"
                                  f"{last_lines(logs.stdout + logs.stderr)}", "Its last lines are above.")
            time.sleep(0.5)

    def healthcheck(self, component: str) -> str:
        """podman's own run of the livenessProbe (curl inside the container): "healthy" or "unhealthy"."""
        box = self.pods[component].containers[0]
        done = self.runtime.run(["healthcheck", "run", box], check=False, timeout=60)
        return "healthy" if done.returncode == 0 else (done.stdout.strip() or "unhealthy")

    def inspect(self, component: str) -> dict[str, Any]:
        """`inspect` of a played component's container."""
        import json

        data = json.loads(self.runtime.output(["inspect", self.pods[component].containers[0]], what="Inspecting"))
        return data[0] if isinstance(data, list) else data

    def __exit__(self, *exc: object) -> None:
        for play in reversed(self._plays):
            play.__exit__()
        self._plays.clear()
        self._network.__exit__()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
