"""slmlab.production against real servers: the readiness checklist asking a running gateway, speculative decoding
measured with llama-server. The service's pipeline, run end to end on the bundled model (v1 passes every stage, the
v2 regression stops at the golden stage), is notebook 3.7's: its checked output states each stage's verdict."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from slmlab.deploy import DeploymentSpec, render_to
from slmlab.production import cicd, layer, readiness, speculative
from slmlab.production.live import LiveService
from slmlab.serve import app_server
from slmlab.setup.llamacpp import llamacpp_available

pytestmark = pytest.mark.slow

SPEC = DeploymentSpec(name="triage", quantization="Q4_1", rate_limit="5/minute")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("service")
    cicd.scaffold(root, SPEC)
    render_to(SPEC, root / "build" / "bundle")
    layer.add_production_layer(root / "build" / "bundle")
    return root / "build" / "bundle"


def test_a_gateway_configured_from_the_bundle_passes_every_service_item(bundle: Path) -> None:
    key = secrets.token_urlsafe(24)
    with app_server(api_keys=[key], rate_limit="5/minute", n_ctx=512) as server:
        report = readiness.evaluate(bundle, live=LiveService(server.url, api_key=key, log_path=server.log_path))
        log = Path(server.log_path).read_text()
    assert report.ok, report.summary()
    judged = {r.key for r in report.results if r.service.status == readiness.PASS}
    assert judged == {"probes", "auth", "rate-limits", "alerts", "dashboards", "logs"}
    assert "429" in report["rate-limits"].service.text and key not in log


def test_an_open_gateway_fails_auth_and_rate_limits(bundle: Path) -> None:
    with app_server(n_ctx=512) as server:
        report = readiness.evaluate(bundle, live=LiveService(server.url, log_path=server.log_path))
    assert sorted(report.failed) == ["auth", "rate-limits"]
    assert "none refused" in report["rate-limits"].service.text


@pytest.mark.skipif(not llamacpp_available(), reason="llama.cpp's programs are not built (slmlab setup llamacpp)")
def test_a_draft_that_is_the_model_itself_is_always_accepted() -> None:
    result = speculative.measure_speculation("smollm2-135m-instruct", draft_max=3, tokens=16)
    assert result.drafted > 0 and result.acceptance > 0.8
    assert result.cost_ratio == 1.0 and result.plain_tok_s > 0 and result.draft_tok_s > 0
