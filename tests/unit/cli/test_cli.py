"""The `slmlab` command as a learner runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.fast


def slmlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slmlab.cli", *args], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": __import__("os").environ["HOME"]})


def test_models_for_binder_shows_tiers_and_verdicts():
    out = slmlab("models", "--hardware", "binder-2gb")
    assert out.returncode == 0, out.stderr
    assert "mybinder.org" in out.stdout and "smollm2-135m-instruct" in out.stdout
    assert "fits" in out.stdout and "does not fit" in out.stdout and "medium" in out.stdout


def test_unknown_preset_is_one_clear_line_without_traceback():
    out = slmlab("models", "--hardware", "bindr-2gb")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Unknown hardware preset 'bindr-2gb'" in out.stderr and "binder-2gb" in out.stderr


def test_doctor_says_ready():
    out = slmlab("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Ready" in out.stdout and "smollm2-135m-instruct" in out.stdout


def test_inspect_the_default_model():
    out = slmlab("inspect")
    assert out.returncode == 0 and "Q4_1" in out.stdout and "llama" in out.stdout


def test_setup_onnx_rejects_an_unknown_variant_before_building_anything():
    out = slmlab("setup", "onnx", "int3")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "Unknown variant 'int3'" in out.stderr and "int8-dynamic" in out.stderr


def test_setup_lists_both_steps():
    out = slmlab("setup", "--help")
    assert out.returncode == 0 and "vllm" in out.stdout and "onnx" in out.stdout


def test_serve_app_refuses_a_public_address_without_keys():
    out = slmlab("serve", "app", "--host", "0.0.0.0", "--port", "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Refusing to listen on 0.0.0.0 without API keys" in out.stderr and "SLMLAB_API_KEYS_FILE" in out.stderr
