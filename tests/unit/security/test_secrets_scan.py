"""slmlab.security.secrets_scan: known key formats and high-entropy tokens in notebook sources and outputs, redacted."""

from __future__ import annotations

import secrets
from pathlib import Path

import nbformat
import pytest

from slmlab.errors import SlmLabError
from slmlab.security.secrets_scan import entropy, looks_random, redact, report, scan_notebook, scan_paths, scan_text

REPO_FOLDERS = tuple(Path(__file__).resolve().parents[3] / f for f in ("solutions", "labs"))


# A fixed key for the tests that must find one: 0.2 % of random 32-byte keys fall under the entropy threshold.
FIXED_KEY = "Zq3vN8xT1bLm6WcR0yHs4KdP9gFj2UeA7oXi5VtQ-Jw"


def _key() -> str:
    return secrets.token_urlsafe(32)


@pytest.mark.fast
def test_known_patterns_are_found_with_their_rule():
    openai = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    hits = {rule for _, rule, _ in scan_text(
        f'client = OpenAI(api_key="{openai}")\nAKIAABCDEFGHIJKLMNOP\n-----BEGIN RSA PRIVATE KEY-----\n'
        f"token hf_{'a1B2c3D4e5' * 3}\nAuthorization: Bearer {_key()}\npassword = 'correct-horse-battery'")}
    assert {"openai-key", "aws-access-key", "private-key", "huggingface-token", "bearer-header",
            "key-assignment"} <= hits


@pytest.mark.fast
def test_entropy_separates_random_keys_from_names_and_digests():
    assert entropy("") == 0 and entropy("aaaa") == 0 and entropy("abcd") == pytest.approx(2.0)
    assert looks_random(FIXED_KEY)
    found = sum(looks_random(_key()) for _ in range(200))
    assert found >= 190  # token_urlsafe(32) ≈ 5 bits per character
    for text in ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-360M-Instruct-Q4_K_M",
                 "automountServiceAccountToken", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 "AutoModelForCausalLM.from_pretrained"):
        assert scan_text(text) == [], text
    assert scan_text(f"key = {_key()}  # secrets-scan: ignore") == []


@pytest.mark.fast
def test_notebook_outputs_are_scanned_and_findings_are_redacted(tmp_path):
    key = FIXED_KEY
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("import os\nkey = os.environ['KEY']\nprint(key)")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=key + "\n"),
                           nbformat.v4.new_output("execute_result", {"text/plain": f"'{key}'"}, execution_count=1)]
    path = tmp_path / "leaky.ipynb"
    nbformat.write(nb, path)
    findings = scan_notebook(path)
    assert [(f.cell, f.where, f.line, f.rule) for f in findings] == [(1, "output", 1, "high-entropy")] * 2
    text = report(findings)
    assert key not in text and redact(key) in text and "leaky.ipynb cell 1 output line 1" in text
    nb.cells[1].outputs = []
    nbformat.write(nb, path)
    assert scan_paths([tmp_path]) == [] and report([]) == "no secrets found"


@pytest.mark.fast
def test_the_course_notebooks_hold_no_secrets():
    assert report(scan_paths([f for f in REPO_FOLDERS])) == "no secrets found"


@pytest.mark.fast
def test_bad_paths_get_clear_errors(tmp_path):
    with pytest.raises(SlmLabError, match="does not exist"):
        scan_paths([tmp_path / "nowhere"])
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(SlmLabError, match="is not a readable notebook"):
        scan_notebook(broken)


@pytest.mark.fast
def test_the_command_exits_1_on_a_finding_and_never_prints_the_secret(tmp_path):
    import subprocess
    import sys

    key = FIXED_KEY
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f'api_key = "{key}"')]
    nbformat.write(nb, tmp_path / "leaky.ipynb")
    run = [sys.executable, "-m", "slmlab.cli", "secrets-scan"]
    out = subprocess.run([*run, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and "leaky.ipynb cell 0" in out.stdout and key not in out.stdout + out.stderr
    clean = subprocess.run([*run, *map(str, REPO_FOLDERS)], capture_output=True, text=True)
    assert clean.returncode == 0 and "no secrets found" in clean.stdout
    missing = subprocess.run([*run, str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
