"""slmlab deploy build, without building: the online and offline builds use the same Dockerfiles and differ only in
the values of their ARG lines; offline weights must match what the bundle was sized for; engines without a local
stand-in say so; contexts are staged by hard links."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from slmlab.deploy import DeploymentSpec, build, build_context, local_images, render_to
from slmlab.deploy.render import bundle_plan
from slmlab.deploy.templating import extra_requirements
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast

SPECS = {"llamacpp-server": dict(engine="llamacpp-server", quantization="Q4_1"),
         "ort-service": dict(engine="ort-service", quantization="INT4", hardware="laptop-8gb")}


@pytest.fixture
def onnx_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ort-int4"
    folder.mkdir()
    (folder / "genai_config.json").write_text("{}")
    return folder


def rendered(tmp_path: Path, engine: str, **changes) -> Path:
    folder = tmp_path / f"bundle-{engine}"
    render_to(DeploymentSpec(name="chat", **{**SPECS[engine], **changes}), folder)
    return folder


@pytest.mark.parametrize("engine", list(SPECS))
def test_online_and_offline_builds_differ_only_in_arg_lines(tmp_path: Path, engine: str, onnx_folder: Path) -> None:
    folder = rendered(tmp_path, engine)
    plan = bundle_plan(folder)
    weights = onnx_folder if engine == "ort-service" else None
    online = build.image_builds(plan, folder, offline=False)
    offline = build.image_builds(plan, folder, offline=True, weights=weights)
    for before, after in zip(online, offline, strict=True):
        assert before.dockerfile == after.dockerfile and before.tag == after.tag == plan.image_ref(before.component)
        assert before.build_args == {} and after.build_args["PYTHON_IMAGE"] == local_images.local_python_image()
        text = before.dockerfile.read_text()
        changed = [line for line in difflib.ndiff(text.splitlines(), build.effective_dockerfile(
            text, after.build_args).splitlines()) if line[:2] in ("- ", "+ ")]
        assert changed and all(line[2:].startswith("ARG ") for line in changed), changed
        froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
        assert all("${" in f or f == "scratch" for f in froms), froms  # every base (or stage) comes from an ARG
    engine_args = offline[0].build_args
    assert engine_args["WEIGHTS"] == "context"
    assert ("SERVER_IMAGE" in engine_args) == (engine == "llamacpp-server")
    assert set(offline[0].context) >= ({"models/model"} if engine == "ort-service" else {"models/model.gguf"})


def test_an_argument_the_dockerfile_does_not_declare_is_an_error() -> None:
    text = "ARG PYTHON_IMAGE=python:3.11\nFROM ${PYTHON_IMAGE}\n"
    assert build.effective_dockerfile(text, {"PYTHON_IMAGE": "x"}) == "ARG PYTHON_IMAGE=x\nFROM ${PYTHON_IMAGE}\n"
    with pytest.raises(SlmLabError, match="declares no ARG PYTHON_IMG") as err:
        build.effective_dockerfile(text, {"PYTHON_IMG": "x"})
    assert "PYTHON_IMAGE" in err.value.hint


def test_offline_weights_must_be_the_quantization_the_bundle_was_sized_for(tmp_path: Path) -> None:
    folder = rendered(tmp_path, "llamacpp-server", quantization="Q4_K_M")
    with pytest.raises(SlmLabError, match="is Q4_1, but the bundle was rendered and sized for Q4_K_M") as err:
        build.image_builds(bundle_plan(folder), folder, offline=True)
    assert "--weights" in err.value.hint
    not_gguf = tmp_path / "model.bin"
    not_gguf.write_bytes(b"x")
    with pytest.raises(SlmLabError, match="not a GGUF file"):
        build.image_builds(bundle_plan(folder), folder, offline=True, weights=not_gguf)


def test_an_onnx_folder_needs_its_genai_config(tmp_path: Path) -> None:
    folder = rendered(tmp_path, "ort-service")
    with pytest.raises(SlmLabError, match="not an ONNX Runtime GenAI folder"):
        build.image_builds(bundle_plan(folder), folder, offline=True, weights=tmp_path)


@pytest.mark.parametrize("changes", [dict(engine="vllm", quantization="F32", hardware="laptop-16gb"),
                                     dict(engine="llamacpp-server", quantization="Q4_1", hardware="t4")])
def test_engines_without_a_local_image_cannot_build_offline(tmp_path: Path, changes: dict) -> None:
    folder = tmp_path / "b"
    render_to(DeploymentSpec(name="chat", **changes), folder)
    with pytest.raises(SlmLabError, match="no local stand-in"):
        build.image_builds(bundle_plan(folder), folder, offline=True)
    assert len(build.image_builds(bundle_plan(folder), folder, offline=False)) == 2


def test_registry_hosts_and_an_explicit_mode() -> None:
    assert build.registry_host("python:3.11.13-slim-bookworm") == "registry-1.docker.io"
    assert build.registry_host("prom/prometheus:v3.5.0") == "registry-1.docker.io"
    assert build.registry_host("ghcr.io/ggml-org/llama.cpp:server-b1") == "ghcr.io"
    assert build.registry_host("localhost:5000/x/y:1") == "localhost:5000"
    plan = DeploymentSpec(**SPECS["llamacpp-server"]).plan()
    assert build.choose_mode(plan, True) == (True, "asked for")
    assert build.online_hosts(plan) == ["registry-1.docker.io", "ghcr.io", "huggingface.co"]


def test_a_folder_without_its_spec_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(SlmLabError, match="has no spec.yaml"):
        bundle_plan(tmp_path)


def test_contexts_are_staged_with_hard_links_and_without_caches(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "a.py").write_text("x = 1\n")
    (source / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    into = build_context.stage({"lib": source, "models/model.gguf": tmp_path / "model.gguf"}, tmp_path / "ctx")
    assert sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file()) == ["lib/pkg/a.py",
                                                                                       "models/model.gguf"]
    assert os.stat(into / "models/model.gguf").st_ino == os.stat(tmp_path / "model.gguf").st_ino
    with pytest.raises(SlmLabError, match="does not exist"):
        build_context.stage({"x": tmp_path / "missing"}, tmp_path / "ctx2")


def test_the_app_images_install_slmlab_without_its_notebook_dependencies(tmp_path: Path) -> None:
    text = (rendered(tmp_path, "llamacpp-server") / "docker" / "gateway.Dockerfile").read_text()
    assert "pip install --no-cache-dir --no-deps ." in text
    pins = extra_requirements("serve")
    assert all(pin in text for pin in pins) and any(p.startswith("fastapi==") for p in pins)
    assert "llama-cpp-python" not in text and "build-essential" not in text
    with pytest.raises(SlmLabError, match="no extra named nope"):
        extra_requirements("nope")


def test_an_image_over_its_size_budget_is_named_with_its_size_and_budget(tmp_path: Path) -> None:
    from slmlab.containers.build import BuiltImage

    job = build.ImageBuild("engine", "x/chat-engine:1", tmp_path / "Dockerfile")
    built = BuiltImage("x/chat-engine:1", 3.0, 312_400_000, ["podman", "build"], tmp_path / "log")
    result = build.BundleBuild(True, "asked for", [(job, built)])
    result.require_within({"engine": 400, "gateway": 1})  # the gateway was not built: nothing to say
    with pytest.raises(SlmLabError, match=r"x/chat-engine:1 is 312\.4 MB, over its budget of 300 MB") as err:
        result.require_within({"engine": 300})
    assert "largest layers" in err.value.hint
