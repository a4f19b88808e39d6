"""`podman kube play` and `kube down` of Kubernetes YAML, as a context manager that always cleans up: the pods,
the podman secrets and the volumes a played Secret leaves behind (podman 4.3 keeps both after `kube down`).

Podman runs Pods and Deployments (one pod each), with their ConfigMaps and Secrets; it does not run Services,
HorizontalPodAutoscalers, PodDisruptionBudgets, NetworkPolicies or RBAC objects (`NOT_PLAYED`). Probes: podman
turns a livenessProbe into the container's healthcheck, run as `curl` inside the container (so the image needs
curl); the readinessProbe is not run (podman < 4.4). Without systemd the healthcheck runs when asked
(`podman healthcheck run`), never on a timer.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmlab.containers.runtime import Runtime
from slmlab.errors import SlmLabError

PLAYED = ("Deployment", "Pod", "ConfigMap", "Secret", "PersistentVolumeClaim")
NOT_PLAYED = {
    "Service": "podman runs no Services (no cluster DNS, no load balancing): pods are reached by their IP",
    "HorizontalPodAutoscaler": "no autoscaler: each Deployment runs one pod",
    "PodDisruptionBudget": "no evictions to budget for",
    "NetworkPolicy": "podman enforces no NetworkPolicies",
    "Namespace": "podman has no namespaces (metadata.namespace is ignored)",
    "ServiceAccount": "no API server, no service accounts",
    "Role": "no API server, no RBAC", "RoleBinding": "no API server, no RBAC",
}


def podman_version(runtime: Runtime) -> tuple[int, int]:
    """podman's (major, minor)."""
    text = runtime.output(["version", "--format", "{{.Client.Version}}"], what="Reading podman's version")
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def secret_document(name: str, files: dict[str, str], version: tuple[int, int]) -> dict[str, Any]:
    """A Secret whose keys podman mounts as files with exactly these contents.

    podman before 4.4 writes a Secret's `data` value into the file as it appears in the YAML, base64 text and
    all (containers/podman#16269, fixed in 4.4); there the value must be the file's text itself, which works only
    for text that is already canonical base64 (hex digits in a multiple of 4 do; `check_secret_text`)."""
    if version < (4, 4):
        for text in files.values():
            check_secret_text(text)
        data = dict(files)
    else:
        data = {key: base64.b64encode(text.encode()).decode() for key, text in files.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data}


def check_secret_text(text: str) -> None:
    """Text podman < 4.4 mounts unchanged: base64's alphabet, no padding, length a multiple of 4."""
    if not re.fullmatch(r"[A-Za-z0-9+/]*", text) or len(text) % 4:
        raise SlmLabError("podman before 4.4 cannot mount this secret text unchanged.",
                          "Use hex digits, a multiple of 4 of them (secrets.token_hex(24)).")


def _utc(stamp: str) -> datetime | None:
    """podman's CreatedAt in UTC ("2026-12-02 03:17:08.64 +0000 UTC" or RFC 3339); None when unreadable."""
    match = re.match(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d(?:\.\d+)?)", stamp)
    return datetime.fromisoformat(f"{match[1]}T{match[2][:15]}+00:00") if match else None


@dataclass
class PlayedPod:
    """One pod that `kube play` started: its name, its containers and its IP on the pod network."""

    name: str
    containers: list[str]
    ip: str


class KubePlay:
    """`kube play FILE` as a context manager: `kube down FILE` on exit, then the secrets and their volumes."""

    def __init__(self, runtime: Runtime, path: Path, secrets: tuple[str, ...] = (), network: str | None = None,
                 timeout: float = 300, empty_dirs: tuple[str, ...] = ()) -> None:
        if not runtime.has_kube_play:
            raise SlmLabError(f"{runtime.name} has no `kube play` (it is podman's).",
                              "Run the containers with `slmlab deploy run DIR`, or `docker compose up` in the bundle.")
        self.runtime, self.path, self.secrets = runtime, path, secrets
        self.network, self.timeout = network, timeout
        self.empty_dirs = empty_dirs  # emptyDir volume names: podman 4.3 makes them named volumes kube down keeps
        self.output = ""
        self.started = datetime.now(UTC)

    @property
    def args(self) -> list[str]:
        """The `kube play` arguments (after the CLI)."""
        return ["kube", "play", *(["--network", self.network] if self.network else []), str(self.path)]

    def __enter__(self) -> KubePlay:
        args = self.args
        self.started = datetime.now(UTC).replace(microsecond=0)  # podman may store whole seconds
        try:
            self.output = self.runtime.output(args, timeout=self.timeout, what=f"podman kube play {self.path.name}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.runtime.run(["kube", "down", str(self.path)], check=False, timeout=self.timeout)
        for name in self.secrets:
            self.runtime.run(["secret", "rm", name], check=False, timeout=60)
            self.runtime.run(["volume", "rm", "-f", name], check=False, timeout=60)  # the key file's volume
        for name in self.empty_dirs:
            done = self.runtime.run(["volume", "inspect", "--format", "{{.Anonymous}} {{.CreatedAt}}", name],
                                    check=False, timeout=60)
            anonymous, _, created = done.stdout.strip().partition(" ")
            made = _utc(created)
            if done.returncode == 0 and anonymous == "true" and made is not None and made >= self.started:
                self.runtime.run(["volume", "rm", "-f", name], check=False, timeout=60)

    def pods(self, prefix: str) -> list[PlayedPod]:
        """The pods whose name starts with `prefix` (a Deployment's pods are `<name>-pod-<n>`)."""
        listed = json.loads(self.runtime.output(["pod", "ps", "--format", "json"], what="Listing pods") or "[]")
        found = []
        for pod in listed:
            if not str(pod.get("Name", "")).startswith(prefix):
                continue
            info = json.loads(self.runtime.output(["pod", "inspect", pod["Name"]], what="Inspecting a pod"))
            info = info[0] if isinstance(info, list) else info
            infra = info.get("InfraContainerID", "")
            boxes = [c["Name"] for c in info.get("Containers", []) if c.get("Id") != infra]
            found.append(PlayedPod(pod["Name"], boxes, self._ip(infra)))
        return found

    def _ip(self, container: str) -> str:
        networks = json.loads(self.runtime.output(["inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                                   container], what="Reading a pod's address") or "{}")
        return next((n.get("IPAddress", "") for n in networks.values() if n.get("IPAddress")), "")
