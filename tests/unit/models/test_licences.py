"""The licence notices that travel with a model's weights: every catalog model has one, each licence says what it
requires (Apache-2.0 and MIT: their text; Gemma and Llama: the notice sentence their terms prescribe), and every
engine image of a rendered bundle carries them (the Dockerfile copies them, the build context holds them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmlab.deploy import DeploymentSpec, build, render_to
from slmlab.deploy.render import bundle_plan
from slmlab.models import catalog
from slmlab.models.licences import LICENCES, licence_files, licence_of, main, notice_text

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("key", sorted(catalog.CATALOG))
def test_every_catalog_model_has_its_licence_files(key: str) -> None:
    files = licence_files(key, "the Q4_K_M GGUF")
    licence = licence_of(key)
    assert licence.url in files["NOTICE"] and catalog.get(key).hub_id in files["NOTICE"]
    assert ("LICENSE" in files) == bool(licence.text_file)


def test_smollm2_carries_the_apache_text_and_gemma_its_prescribed_notice() -> None:
    smol = licence_files("smollm2-135m-instruct")
    assert "Apache License" in smol["LICENSE"] and "Version 2.0, January 2004" in smol["LICENSE"]
    gemma = licence_files("gemma-3-270m")
    assert "LICENSE" not in gemma  # the terms' text is not shipped: NOTICE says to add it before publishing
    assert ("Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"
            in gemma["NOTICE"])
    assert "prohibited_use_policy" in gemma["NOTICE"] and "before you publish" in gemma["NOTICE"]
    assert "Built with Llama" in notice_text("llama-3.2-1b-instruct")


def test_an_mit_licence_names_its_copyright_holder() -> None:
    text = licence_files("phi-4-mini-instruct")["LICENSE"]
    assert "Copyright (c) Microsoft Corporation" in text and "{holder}" not in text


def test_the_module_writes_the_files_as_the_onnx_image_build_runs_it(tmp_path: Path) -> None:
    assert main(["gemma-3-270m", str(tmp_path / "out"), "the INT4 model"]) == 0
    assert "(the INT4 model)" in (tmp_path / "out" / "NOTICE").read_text()
    assert main(["one-argument"]) == 2


@pytest.mark.parametrize(("engine", "model", "quant"), [("llamacpp-server", "gemma-3-270m", "Q4_K_M"),
                                                        ("llamacpp-server", "smollm2-135m-instruct", "Q4_1"),
                                                        ("vllm", "smollm2-135m-instruct", "F32"),
                                                        ("ollama", "gemma-3-270m", "Q4_K_M"),
                                                        ("ort-service", "smollm2-135m-instruct", "INT4")])
def test_every_engine_image_carries_the_weights_licence(tmp_path: Path, engine: str, model: str, quant: str) -> None:
    render_to(DeploymentSpec(name="chat", engine=engine, model=model, quantization=quant, hardware="laptop-16gb"),
              tmp_path)
    notice = (tmp_path / "licenses" / "model" / "NOTICE").read_text()
    assert LICENCES[catalog.get(model).license].url in notice
    dockerfile = (tmp_path / "docker" / "engine.Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM "):]  # the image's own stage, not a build stage
    if engine == "ort-service":  # its context is the course's source tree: the course's code writes them
        assert f"python -m slmlab.models.licences {model} /licenses/model" in final
    else:
        assert "COPY licenses/model/ /licenses/model/" in final
        for job in build.image_builds(bundle_plan(tmp_path), tmp_path, offline=False):
            if job.component == "engine":
                assert job.context["licenses/model"] == tmp_path / "licenses" / "model"
