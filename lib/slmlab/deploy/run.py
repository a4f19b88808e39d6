"""`slmlab deploy run DIR`: the bundle's engine and gateway as containers, hardened exactly as the rendered
Kubernetes manifests say (read from k8s/, not restated): the pod's user and group, a read-only root filesystem,
no capabilities, no privilege escalation, the emptyDir volumes as tmpfs of the same size, the Secret mounted as a
read-only file, the memory and CPU limits, the container's args and environment (the gateway's ConfigMap
included). Both join a network on which the engine also answers to its Service's DNS name, so the gateway's
upstream URL is the manifest's own; ports are published on 127.0.0.1 only.

    with BundleRun("out/", runtime) as run:
        client = openai.OpenAI(base_url=run.base_url, api_key=run.api_key)
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmlab.containers.run import Container, ContainerSpec, Network, secret_dir
from slmlab.containers.runtime import Runtime
from slmlab.deploy import k8s
from slmlab.deploy.render import bundle_plan
from slmlab.deploy.spec import Plan
from slmlab.deploy.templating import names
from slmlab.errors import SlmLabError

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|m)?$")
_FACTORS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, None: 1}


def mebibytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("896Mi", "1Gi", "512M") in MiB, rounded up."""
    match = _QUANTITY.match(str(quantity).strip())
    if not match or match[2] == "m":
        raise SlmLabError(f"{quantity!r} is not a memory quantity.", "Use e.g. 896Mi or 1Gi.")
    return int(-(-float(match[1]) * _FACTORS[match[2]] // 2**20))


def cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("1500m", "2") in cores."""
    match = _QUANTITY.match(str(quantity).strip())
    if not match or match[2] not in (None, "m"):
        raise SlmLabError(f"{quantity!r} is not a CPU quantity.", "Use e.g. 1500m or 2.")
    return float(match[1]) / (1000 if match[2] == "m" else 1)


def deployment(manifests: Sequence[k8s.Manifest], name: str) -> dict[str, Any]:
    """The Deployment object named `name`."""
    for manifest in manifests:
        if manifest.kind == "Deployment" and manifest.name == name:
            return manifest.data
    raise SlmLabError(f"The bundle has no Deployment {name}.", "Render it again: slmlab deploy render SPEC --out DIR")


def config_maps(manifests: Sequence[k8s.Manifest]) -> dict[str, dict[str, str]]:
    """Every ConfigMap's data, by name."""
    return {m.name: {str(k): str(v) for k, v in (m.data.get("data") or {}).items()}
            for m in manifests if m.kind == "ConfigMap"}


def container_spec(deploy: dict[str, Any], image: str, name: str, secret_files: Path | None,
                   configs: dict[str, dict[str, str]], secret_values: dict[str, str]) -> ContainerSpec:
    """The run flags of a Deployment's (first) container, from its pod and container securityContext, volumes,
    resources, args and environment."""
    pod = deploy["spec"]["template"]["spec"]
    box = pod["containers"][0]
    pod_sc, box_sc = pod.get("securityContext") or {}, box.get("securityContext") or {}
    uid, gid = box_sc.get("runAsUser", pod_sc.get("runAsUser")), box_sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    tmpfs, binds = {}, {}
    for mount in box.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            tmpfs[mount["mountPath"]] = f"{mebibytes(volume['emptyDir'].get('sizeLimit', '64Mi'))}m"
        elif "secret" in volume and secret_files is not None:
            binds[str(secret_files)] = mount["mountPath"]
    env: dict[str, str] = {}
    for source in box.get("envFrom") or []:
        env.update(configs.get(source.get("configMapRef", {}).get("name", ""), {}))
    for item in box.get("env") or []:
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        env[item["name"]] = secret_values[ref["key"]] if ref else str(item.get("value", ""))
    limits = (box.get("resources") or {}).get("limits") or {}
    return ContainerSpec(
        image=image, name=name, args=[str(a) for a in box.get("args") or []],
        user=f"{uid}:{gid if gid is not None else uid}" if uid is not None else None,
        read_only=box_sc.get("readOnlyRootFilesystem") is True,
        cap_drop_all="ALL" in ((box_sc.get("capabilities") or {}).get("drop") or []),
        no_new_privileges=box_sc.get("allowPrivilegeEscalation") is False, tmpfs=tmpfs, binds=binds, env=env,
        ports={int(p["containerPort"]): None for p in box.get("ports") or []},
        memory_mb=mebibytes(limits["memory"]) if "memory" in limits else None,
        cpus=cores(limits["cpu"]) if "cpu" in limits else None)


def ready_path(deploy: dict[str, Any]) -> str:
    """The readiness probe's path."""
    box = deploy["spec"]["template"]["spec"]["containers"][0]
    return str(((box.get("readinessProbe") or {}).get("httpGet") or {}).get("path", "/"))


def require_images(runtime: Runtime, plan: Plan, components: Sequence[str], folder: Path) -> None:
    """Every component's image is in the local store (else the runtime would try to pull it from the registry)."""
    missing = [plan.image_ref(c) for c in components if not runtime.image_exists(plan.image_ref(c))]
    if missing:
        raise SlmLabError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not built here.",
                          f"Build first: slmlab deploy build {folder}")


def ask(base_url: str, api_key: str, model: str, prompt: str = "Say hello in five words.",
        max_tokens: int = 24) -> dict[str, Any]:
    """One chat request with the official openai client: the answer, its usage and how long it took."""
    import time

    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=0, timeout=120)
    begin = time.perf_counter()
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            max_tokens=max_tokens, temperature=0)
    return {"text": answer.choices[0].message.content, "seconds": round(time.perf_counter() - begin, 3),
            "completion_tokens": answer.usage.completion_tokens if answer.usage else None, "model": answer.model}


def bundle_api_key(folder: str | Path) -> tuple[str, Path]:
    """The bundle's API key from secrets/api-keys (the file compose mounts), written with a new key when missing."""
    path = Path(folder) / "secrets" / "api-keys"
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        return path.read_text(encoding="utf-8").strip().splitlines()[0].strip(), path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    key = secrets.token_hex(24)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return key, path


class BundleRun:
    """The engine and the gateway of a rendered bundle, running; everything is removed on exit."""

    def __init__(self, folder: str | Path, runtime: Runtime, components: Sequence[str] = ("engine", "gateway"),
                 engine_memory_mb: int | None = None, restart: str | None = None,
                 startup_timeout: float | None = None, api_key: str | None = None) -> None:
        self.folder, self.runtime, self.components = Path(folder), runtime, tuple(components)
        self.plan: Plan = bundle_plan(self.folder)
        self.names = names(self.plan)
        self.api_key = (api_key or secrets.token_hex(24)) if self.plan.spec.auth == "api-key" else ""
        self.engine_memory_mb, self.restart = engine_memory_mb, restart
        self.startup_timeout = startup_timeout or float(self.plan.engine.startup_seconds)
        self.engine: Container | None = None
        self.gateway: Container | None = None
        self._network = Network(runtime, f"slmlab-{self.names['app']}")
        self._scratch: Path | None = None

    @property
    def base_url(self) -> str:
        """The gateway's OpenAI-compatible base URL (…/v1) on 127.0.0.1."""
        if self.gateway is None:
            raise SlmLabError("The gateway is not running.", "Start the bundle with the gateway.")
        return self.gateway.url() + "/v1"

    @property
    def key_file(self) -> Path | None:
        """The API key's file here (the containers mount it read-only), while it runs; None without auth."""
        return self._scratch / "secret" / "api-key" if self._scratch and self.api_key else None

    def specs(self) -> dict[str, tuple[ContainerSpec, str]]:
        """(run flags, readiness path) of each component, read from the manifests."""
        manifests = k8s.load_dir(self.folder)
        configs = config_maps(manifests)
        secret_path = self._scratch / "secret" if self._scratch else None
        values = {"api-key": self.api_key}
        out = {}
        for component in self.components:
            deploy = deployment(manifests, self.names[component])
            spec = container_spec(deploy, self.plan.image_ref(component), self.names[component],
                                  secret_path if self.api_key else None, configs, values)
            spec = replace(spec, network=self._network.name)
            if component == "engine":
                service = f"{self.names['engine']}.{self.plan.spec.namespace}.svc"  # the Service's DNS name
                spec = replace(spec, aliases=(self.names["engine"], service), restart=self.restart,
                               memory_mb=self.engine_memory_mb or spec.memory_mb)
            out[component] = (spec, ready_path(deploy))
        return out

    def __enter__(self) -> BundleRun:
        require_images(self.runtime, self.plan, self.components, self.folder)
        self._scratch = Path(tempfile.mkdtemp(prefix="slmlab-run-"))
        try:
            if self.api_key:
                secret_dir(self._scratch / "secret", {"api-key": self.api_key})
            specs = self.specs()
            self._network.__enter__()
            if "engine" in specs:
                self.engine = Container(self.runtime, specs["engine"][0], specs["engine"][1],
                                        startup_timeout=self.startup_timeout)
                self.engine.start()
            if "gateway" in specs:
                self.gateway = Container(self.runtime, specs["gateway"][0], specs["gateway"][1],
                                         startup_timeout=self.startup_timeout)
                self.gateway.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for box in (self.gateway, self.engine):
            if box is not None:
                box.remove()
        self._network.__exit__()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
