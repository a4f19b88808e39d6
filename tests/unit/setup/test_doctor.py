"""slmlab.models.hardware detection and slmlab.setup.doctor's checks, including the Ollama probe."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from slmlab.models import hardware
from slmlab.setup import doctor

pytestmark = pytest.mark.fast


def test_detect_this_machine():
    hw = hardware.detect()
    assert hw.cores >= 1 and hw.ram_gb > 0.5 and hw.device in {"cpu", "cuda", "mps"}
    assert hardware.get_preset("this-machine").key == "this-machine"


def test_presets_have_the_memory_their_names_say():
    assert hardware.get_preset("binder-2gb").model_memory_gb == 2
    assert hardware.get_preset("T4").model_memory_gb == 16 and hardware.get_preset("t4").device == "cuda"
    assert hardware.get_preset("raspberry-pi-5").model_memory_gb == 8


def test_ollama_url_follows_ollama_host_conventions(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert doctor.ollama_url() == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:8080")
    assert doctor.ollama_url() == "http://127.0.0.1:8080"
    monkeypatch.setenv("OLLAMA_HOST", "https://ollama.example.org")  # a scheme without a port: its own port
    assert doctor.ollama_url() == "https://ollama.example.org:443"


class _Version(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({"version": "0.12.3"}).encode()
        self.send_response(200 if self.path == "/api/version" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_ollama_probe_reports_a_server_and_its_absence(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Version)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.server_port}")
        up = doctor.check_ollama()
        assert up.ok and "version 0.12.3" in up.detail
    finally:
        server.shutdown()
        server.server_close()
    down = doctor.check_ollama(timeout=0.5)
    assert not down.ok and not down.required and "not reachable" in down.detail and "ollama serve" in down.fix


def test_doctor_report_is_ok_here_and_fails_for_a_missing_core_package(monkeypatch):
    report = doctor.run_doctor(ollama_timeout=0.2)
    assert report.ok, report.to_frame()
    names = set(report.to_frame()["name"])
    assert {"Python", "model smollm2-135m-instruct", "memory", "GPU", "Ollama"} <= names
    monkeypatch.setattr(doctor, "CORE_PACKAGES", doctor.CORE_PACKAGES + [("no-such-package-xyz", "")])
    broken = doctor.run_doctor(ollama_timeout=0.2)
    missing = [c for c in broken.checks if c.name == "package no-such-package-xyz"][0]
    assert not broken.ok and missing.fix == "pip install -e ."


def test_optional_package_missing_is_a_warning_with_its_extra():
    check = doctor.check_package("no-such-package-xyz", "onnx")
    assert not check.ok and not check.required and check.fix == "pip install -e '.[onnx]'"


def test_setup_steps_are_optional_checks_that_name_their_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMLAB_VLLM_VENV", str(tmp_path / "no-venv"))
    vllm = doctor.check_vllm()
    assert not vllm.ok and not vllm.required and "slmlab setup vllm" in vllm.fix
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path / "cache"))  # an empty cache: nothing prebuilt
    onnx = doctor.check_onnx_models()
    assert not onnx.ok and not onnx.required and "int4" in onnx.detail and "slmlab setup onnx" in onnx.fix
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(doctor, "Path", lambda p: tmp_path / "nothing")
    programs = doctor.check_programs()
    assert not programs.ok and "nginx" in programs.detail and "apt-get install" in programs.fix
