"""`slmlab doctor`: can this environment run the course? One check per line, each with its fix."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.serve.ollama.server import host_url

MIN_FREE_RAM_GB = 1.5  # one notebook at a time fits in this (mybinder.org gives 2 GB)
MIN_FREE_DISK_GB = 1.0
# (distribution, import name, extra that installs it or "" for core)
CORE_PACKAGES = [("llama-cpp-python", ""), ("gguf", ""), ("huggingface-hub", ""), ("papermill", ""),
                 ("ipywidgets", ""), ("psutil", ""), ("pandas", ""), ("matplotlib", "")]
OPTIONAL_PACKAGES = [("jupyterlab", "lab"), ("torch", "hf"), ("transformers", "hf"), ("onnxruntime", "onnx"),
                     ("onnxruntime-genai", "onnx"), ("ollama", "ollama"), ("sentence-transformers", "embeddings"),
                     ("mlx-lm", "mlx"),
                     ("nbval", "test")]


@dataclass
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # a failed optional check is a warning, not a failure


@dataclass
class DoctorReport:
    """All checks; `ok` when every required check passed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing required is missing."""
        return all(c.ok for c in self.checks if c.required)

    def to_frame(self):
        """The checks as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.checks])


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    """The course is tested on Python 3.11."""
    ver = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] == (3, 11)
    return Check("Python", ok, ver, "" if ok else "Use Python 3.11 (conda env create -f environment.yml).")


def check_package(dist: str, extra: str) -> Check:
    """Is a package installed, and which version."""
    ver = _version(dist)
    if dist == "torch" and ver:
        ver += " (CPU build)" if "+cpu" in ver else ""
    fix = f"pip install -e '.[{extra}]'" if extra else "pip install -e ."
    return Check(f"package {dist}", ver is not None, ver or "not installed", "" if ver else fix, required=not extra)


def check_models() -> list[Check]:
    """The bundled offline models resolve (and match their checksums)."""
    from slmlab import models

    checks = []
    for key, bundled in models.BUNDLED.items():
        try:
            resolved = models.resolve(key)
            checks.append(Check(f"model {key}", True, f"{resolved.size_mb} MB, sha256 ok, {resolved.path}"))
        except SlmLabError as err:
            checks.append(Check(f"model {key}", False, err.problem, err.hint, required=not bundled.extra))
    return checks


def check_memory() -> Check:
    """Enough free RAM for one notebook (container limits included)."""
    import psutil

    from slmlab.models.hardware import cgroup_memory_bytes

    free = psutil.virtual_memory().available
    limit = cgroup_memory_bytes()
    if limit:
        free = min(free, limit - psutil.Process().memory_info().rss)
    gb = free / 1024**3
    ok = gb >= MIN_FREE_RAM_GB
    detail = f"{gb:.1f} GB available" + (f" (container limit {limit / 1024**3:.1f} GB)" if limit else "")
    return Check("memory", ok, detail, "" if ok else "Close other notebooks (Kernel > Shut Down All Kernels).")


def check_cpu() -> Check:
    """Cores llama.cpp will use."""
    from slmlab.models.hardware import physical_cores

    cores = physical_cores()
    return Check("CPU cores", True, f"{cores} usable physical core(s)")


def check_gpu() -> Check:
    """A GPU is optional: every notebook runs on the CPU."""
    from slmlab.models.hardware import detect

    hw = detect()
    detail = f"{hw.gpu} ({hw.vram_gb} GB)" if hw.vram_gb else (hw.gpu or "none — the course runs on the CPU")
    return Check("GPU", True, detail, required=False)


def check_disk() -> Check:
    """Free space where models are cached."""
    from slmlab.models.resolver import cache_dir

    free = shutil.disk_usage(cache_dir()).free / 1e9
    ok = free >= MIN_FREE_DISK_GB
    return Check("disk", ok, f"{free:.1f} GB free in {cache_dir()}",
                 "" if ok else "Free disk space or set SLMLAB_CACHE.")


def ollama_url() -> str:
    """Ollama's base URL from OLLAMA_HOST, by Ollama's own rules (see slmlab.serve.ollama.server.host_url)."""
    return host_url(os.environ.get("OLLAMA_HOST"))


def check_ollama(timeout: float = 1.5) -> Check:
    """Does an Ollama API answer at OLLAMA_HOST? (optional: part 2 starts its own compatible server)."""
    url = ollama_url()
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout) as resp:
            version = json.loads(resp.read()).get("version", "?")
        return Check("Ollama", True, f"version {version} at {url}", required=False)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("Ollama", False, f"not reachable at {url} ({reason})",
                     "Optional: install Ollama (https://ollama.com/download) and run `ollama serve`, "
                     "or use the course's Ollama-compatible server in part 2.", required=False)


def check_hub() -> Check:
    """Where Hugging Face downloads go, and whether the hub is switched off."""
    from huggingface_hub import constants

    offline = "offline (HF_HUB_OFFLINE=1): bundled and cached models only"
    mode = offline if constants.HF_HUB_OFFLINE else "online allowed"
    return Check("Hugging Face hub", True, f"{mode}; cache {constants.HF_HUB_CACHE}", required=False)


def check_vllm() -> Check:
    """Is vLLM's own virtualenv there (`slmlab setup vllm`)? Optional: only part 3's vLLM notebook needs it."""
    from slmlab.setup.vllm_env import vllm_python

    try:
        return Check("vLLM virtualenv", True, str(vllm_python()), required=False)
    except SlmLabError as err:
        return Check("vLLM virtualenv", False, err.problem, err.hint, required=False)


def check_olive() -> Check:
    """Is Olive's own virtualenv there (`slmlab setup olive`)? Optional: without it 1.4 skips its Olive runs."""
    from slmlab.setup.olive_env import olive_program, olive_version

    try:
        program = olive_program()
        return Check("Olive virtualenv", True, f"olive-ai {olive_version(program.parent.parent)}, {program}",
                     required=False)
    except SlmLabError as err:
        return Check("Olive virtualenv", False, f"{err.problem} Notebook 1.4 skips its Olive section.", err.hint,
                     required=False)


def check_litert() -> Check:
    """Is the LiteRT Torch venv there with its conversion (`slmlab setup litert`)? Optional: 1.6 leaves LiteRT out."""
    from slmlab.convert.litert_cli import read_run
    from slmlab.models.resolver import DEFAULT_MODEL
    from slmlab.setup.litert_env import litert_python, litert_torch_version

    try:
        python = litert_python()
    except SlmLabError as err:
        return Check("LiteRT Torch virtualenv", False, f"{err.problem} Notebook 1.6 leaves LiteRT out.", err.hint,
                     required=False)
    run = read_run(DEFAULT_MODEL)
    converted = "nothing converted yet (slmlab setup litert converts it)"
    if run is not None and run.ok and run.output:
        converted = f"{Path(run.output).name} converted"
    return Check("LiteRT Torch virtualenv", True,
                 f"litert-torch {litert_torch_version(python.parents[1])}, {python.parents[1]}; {converted}",
                 required=False)


def check_onnx_models() -> Check:
    """Are the ONNX variants prebuilt (`slmlab setup onnx`)? Missing ones are built on first use, at ~1.9 GB."""
    from slmlab.convert.gguf_to_onnx import read_marker
    from slmlab.convert.onnx_quantize import SETUP_VARIANTS, expected_folder

    try:
        missing = [v for v in SETUP_VARIANTS if read_marker(expected_folder(v)) is None]
    except SlmLabError as err:
        return Check("ONNX models", False, err.problem, err.hint, required=False)
    if not missing:
        return Check("ONNX models", True, f"prebuilt: {', '.join(SETUP_VARIANTS)}", required=False)
    return Check("ONNX models", False, f"not built yet: {', '.join(missing)}",
                 "Run: slmlab setup onnx  (about 2 minutes once; the builders need ~1.9 GB of memory).",
                 required=False)


def check_llamacpp() -> Check:
    """Are llama.cpp's own programs built (`slmlab setup llamacpp`)? Optional: llama-server and the CLI tools."""
    from slmlab.setup.llamacpp import llamacpp_dir, read_marker

    try:
        folder = llamacpp_dir()
    except SlmLabError as err:
        return Check("llama.cpp programs", False, err.problem, err.hint, required=False)
    marker = read_marker(folder) or {}
    build = marker.get("llama_cpp_build")
    commit = str(marker.get("llama_cpp_commit") or "?")[:9]
    return Check("llama.cpp programs", True, f"{'b' + str(build) if build else 'llama.cpp'} ({commit}), "
                 f"{marker.get('size_mb', '?')} MB, {folder / 'bin'}", required=False)


def check_programs() -> Check:
    """The system programs part 2 and 3 start: Prometheus, promtool, nginx, Chromium and its driver."""
    wanted = ("prometheus", "promtool", "nginx", "chromium", "chromedriver")
    missing = [p for p in wanted if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]
    if not missing:
        return Check("servers", True, ", ".join(wanted), required=False)
    return Check("servers", False, f"missing: {', '.join(missing)}",
                 "On Debian/Ubuntu: apt-get install -y --no-install-recommends prometheus nginx chromium "
                 "chromium-driver (see the README).", required=False)


def check_languages() -> list[Check]:
    """The other languages' toolchains (notebook 2.7): node/npm, mcs/mono, g++/cmake. Optional: a missing one is
    skipped by the notebook, saying so."""
    from slmlab.languages.toolchains import INSTALL, toolchains

    return [Check(f"toolchain {found.label}", found.ok, found.describe(), "" if found.ok else INSTALL[language],
                  required=False) for language, found in toolchains().items()]


def run_doctor(ollama_timeout: float = 1.5) -> DoctorReport:
    """Run every check and return the report."""
    checks = [check_python()]
    checks += [check_package(d, e) for d, e in CORE_PACKAGES + OPTIONAL_PACKAGES]
    checks += check_models()
    checks += [check_memory(), check_cpu(), check_gpu(), check_disk(), check_ollama(ollama_timeout), check_hub()]
    checks += [check_onnx_models(), check_olive(), check_litert(), check_vllm(), check_llamacpp(), check_programs()]
    checks += check_languages()
    from slmlab.setup.container_checks import container_checks

    checks += [Check(*row, required=False) for row in container_checks()]
    return DoctorReport(checks)


def print_report(report: DoctorReport) -> None:
    """Show the report as a table: ✔ ok, ! optional missing, ✘ required missing."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="slmlab doctor", show_lines=False)
    for col in ("", "check", "detail", "what to do"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        mark = "[green]✔[/]" if c.ok else ("[red]✘[/]" if c.required else "[yellow]![/]")
        table.add_row(mark, c.name, c.detail, c.fix)
    console = Console(width=140)
    console.print(table)
    if report.ok:
        console.print("[green]Ready: everything the course requires is here.[/]")
    else:
        console.print("[red]Not ready: fix the ✘ lines above, then run `slmlab doctor` again.[/]")
