"""slmlab.serve.gateway.security: API keys, rate limits, size and max_tokens caps, CORS, binding — on the real app.

The fast tests build the real FastAPI app without entering its lifespan, so the model is never loaded: every
request that passes the security layer gets 503 "still loading", which proves it got through, and every one
that does not gets 401 / 429 / 413 before reaching the model. The slow tests load SmolLM2 and run the server
as a subprocess, to show the caps on real generations and that a key never reaches the server's log.
"""

from __future__ import annotations

import logging
import os

import httpx
import pytest
from fastapi.testclient import TestClient

from slmlab.backends import open_backend
from slmlab.errors import SlmLabError
from slmlab.serve.gateway.app import AppSettings, create_app, main
from slmlab.serve.gateway.security import (
    ApiKeys,
    RateLimiter,
    add_cors,
    bearer_token,
    check_bind_host,
    check_max_tokens,
    is_loopback,
    key_id,
    load_api_keys,
    read_keys_file,
)
from slmlab.serve.gateway.server import app_server

KEY = "sk-course-0123456789abcdef"
OTHER_KEY = "sk-course-fedcba9876543210"
QUESTION = {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 8}


def _app(**settings: object):
    """The real app over a llama.cpp factory; without `with TestClient(...)` the factory is never called."""
    return create_app(lambda: open_backend("llamacpp", n_ctx=512), AppSettings(**settings))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- keys

@pytest.mark.fast
def test_keys_come_from_the_environment_and_a_secret_file(tmp_path):
    secret = tmp_path / "api-keys"
    secret.write_text(f"# one key per line\n\n{OTHER_KEY}\n  {KEY}  \n")
    assert read_keys_file(secret) == [OTHER_KEY, KEY]
    env = {"SLMLAB_API_KEYS": f"{KEY}, {KEY}", "SLMLAB_API_KEYS_FILE": str(secret)}
    assert load_api_keys(env=env) == (KEY, OTHER_KEY)  # unique, in order
    assert load_api_keys(env={}) == ()  # nothing configured: auth off
    assert AppSettings.from_env(env).api_keys == (KEY, OTHER_KEY)


@pytest.mark.fast
def test_a_key_file_saved_on_windows_loads_like_a_plain_one(tmp_path):
    plain, windows = tmp_path / "plain", tmp_path / "notepad"
    plain.write_bytes(f"# one key per line\n{OTHER_KEY}\n{KEY}\n".encode())
    windows.write_bytes(f"\ufeff# one key per line\r\n{OTHER_KEY}\r\n{KEY}\r\n".encode())  # BOM + CRLF
    assert read_keys_file(windows) == read_keys_file(plain) == [OTHER_KEY, KEY]
    bom_first = tmp_path / "bom-first"
    bom_first.write_bytes(f"\ufeff{KEY}\r\n".encode())  # the BOM right before the key: not part of it
    assert load_api_keys(keys_file=bom_first) == (KEY,)
    client = TestClient(_app(api_keys=AppSettings.from_env({"SLMLAB_API_KEYS_FILE": str(windows)}).api_keys))
    assert client.get("/v1/models", headers=_bearer(KEY)).status_code == 200
    latin1 = tmp_path / "latin1"
    latin1.write_bytes(KEY.encode() + b"\n" + "clé-secrète-0123456789".encode("latin-1") + b"\n")
    with pytest.raises(SlmLabError, match=r"API-key file .*latin1 is not UTF-8 text \(line 2") as err:
        read_keys_file(latin1)
    assert KEY not in str(err.value) and "secr" not in str(err.value)


@pytest.mark.fast
def test_key_errors_name_the_source_never_the_key(tmp_path):
    with pytest.raises(SlmLabError, match="does not exist") as err:
        load_api_keys(keys_file=tmp_path / "missing")
    assert "missing" in str(err.value)
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(SlmLabError, match="holds no key"):
        read_keys_file(tmp_path / "empty")
    weak = "hunter2-weak"
    (tmp_path / "weak").write_text(f"{KEY}\n{weak}\n")
    with pytest.raises(SlmLabError, match=r"API key #2 from .*weak is too weak: it has 12 characters") as err:
        load_api_keys(keys_file=tmp_path / "weak")
    assert weak not in str(err.value) and KEY not in str(err.value) and "token_urlsafe" in err.value.hint
    with pytest.raises(SlmLabError, match="too weak"):
        AppSettings(api_keys=("short",))


@pytest.mark.fast
def test_keys_are_compared_by_digest_and_never_shown():
    keys = ApiKeys([KEY, OTHER_KEY])
    assert keys.enabled and len(keys) == 2
    assert keys.identify(KEY) == key_id(KEY) and keys.identify(OTHER_KEY) == key_id(OTHER_KEY)
    for wrong in (None, "", KEY[:-1], KEY + "x", KEY.upper(), "é" * 40):
        assert keys.identify(wrong) is None
    assert key_id(KEY).startswith("key-") and KEY not in key_id(KEY) and len(key_id(KEY)) == 12
    assert KEY not in repr(keys) and KEY not in repr(AppSettings(api_keys=(KEY,)))
    assert not ApiKeys().enabled
    assert bearer_token({"authorization": f"Bearer {KEY}"}) == KEY
    assert bearer_token({"authorization": f"bearer  {KEY} "}) == KEY
    assert bearer_token({"authorization": f"Basic {KEY}"}) is None and bearer_token({}) is None


# ---------------------------------------------------------------- rate limits and caps

@pytest.mark.fast
def test_token_bucket_allows_a_burst_then_refills_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter.parse("6/minute", burst=2, clock=clock)
    assert limiter.take("a") == 0 and limiter.take("a") == 0
    assert limiter.take("a") == pytest.approx(10.0)  # one request per 10 s
    assert limiter.take("b") == 0  # buckets are per client
    clock.now += 5
    assert limiter.take("a") == pytest.approx(5.0)
    clock.now += 5
    assert limiter.take("a") == 0
    clock.now += 3600  # a long pause refills to the burst, not beyond
    assert [limiter.take("a") for _ in range(3)][:2] == [0, 0] and limiter.take("a") > 0


@pytest.mark.fast
def test_rate_limits_are_read_from_text():
    assert RateLimiter.parse(None) is None and RateLimiter.parse("") is None
    limiter = RateLimiter.parse("5/minute")
    assert limiter.per_second == pytest.approx(5 / 60) and limiter.burst == 5
    assert limiter.description == "5 requests per minute"
    assert RateLimiter.parse("10/second").per_second == 10 and RateLimiter.parse("2 / s").per_second == 2
    assert RateLimiter.parse("3600/hours").per_second == 1 and RateLimiter.parse(30).per_second == 0.5
    for bad in ("fast", "5/fortnight", "-1/minute", "0/minute"):
        with pytest.raises(SlmLabError, match="rate limit"):
            RateLimiter.parse(bad)
    with pytest.raises(SlmLabError, match="rate limit"):
        AppSettings(rate_limit="lots")


@pytest.mark.fast
def test_max_tokens_cap_and_binding():
    assert check_max_tokens(None, cap=512, default=256) == 256
    assert check_max_tokens(None, cap=100, default=256) == 100
    assert check_max_tokens(512, cap=512, default=256) == 512
    with pytest.raises(SlmLabError, match="max_tokens=513 is over this server's limit of 512"):
        check_max_tokens(513, cap=512, default=256)
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))
    assert check_bind_host("127.0.0.1", api_keys_set=False) == "127.0.0.1"
    with pytest.raises(SlmLabError, match="Refusing to listen on 0.0.0.0 without API keys"):
        check_bind_host("0.0.0.0", api_keys_set=False)
    assert check_bind_host("0.0.0.0", api_keys_set=True) == "0.0.0.0"


@pytest.mark.fast
def test_the_command_line_refuses_a_public_address_without_keys(monkeypatch, capsys):
    monkeypatch.delenv("SLMLAB_API_KEYS", raising=False)
    monkeypatch.delenv("SLMLAB_API_KEYS_FILE", raising=False)
    assert main(["--host", "0.0.0.0", "--port", "9"]) == 2  # refused before loading anything
    assert "Refusing to listen on 0.0.0.0 without API keys" in capsys.readouterr().err


# ---------------------------------------------------------------- the middleware, on the real app

@pytest.mark.fast
def test_401_without_or_with_a_wrong_key_and_probes_stay_open():
    client = TestClient(_app(api_keys=(KEY,)))
    answer = client.post("/v1/chat/completions", json=QUESTION)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="slmlab"'
    assert answer.json()["error"]["code"] == "invalid_api_key" and "Authorization: Bearer" in answer.text
    wrong = "sk-not-the-right-key-000000"
    answer = client.post("/v1/chat/completions", json=QUESTION, headers=_bearer(wrong))
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert wrong not in answer.text and KEY not in answer.text  # never echoed
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    # With the key the request reaches the app (whose model is not loaded in this test: 503, Retry-After).
    answer = client.post("/v1/chat/completions", json=QUESTION, headers=_bearer(KEY))
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_not_ready"
    assert client.get("/v1/models", headers=_bearer(KEY)).status_code == 200
    for path in ("/healthz", "/metrics", "/"):
        assert client.get(path).status_code == 200, path
    assert client.get("/readyz").status_code == 503  # not loaded: red
    metrics = client.get("/metrics").text
    assert 'slmlab_http_rejected_total{reason="unauthorized"} 4.0' in metrics
    assert 'slmlab_http_requests_total{method="POST",route="/v1/chat/completions",status="401"} 2.0' in metrics


@pytest.mark.fast
def test_azures_openai_v1_path_and_api_key_header_reach_the_same_routes(caplog):
    client = TestClient(_app(api_keys=(KEY,)))
    served = client.get("/v1/models", headers=_bearer(KEY)).json()
    for path in ("/v1/models", "/openai/v1/models"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"api-key": OTHER_KEY}).status_code == 401
        listed = client.get(path, headers={"api-key": KEY})
        assert listed.status_code == 200 and listed.json() == served and served["object"] == "list"
        assert client.get(path, headers=_bearer(KEY)).json() == served
    # One valid key among those presented lets the request in (a placeholder Bearer beside Azure's header).
    assert client.get("/openai/v1/models", headers={**_bearer("sk-placeholder-0000000000"), "api-key": KEY}).json() \
        == listed.json()
    wrong = client.get("/openai/v1/models", headers={"api-key": "sk-not-the-right-key-000000"})
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"] and "not-the-right" not in wrong.text
    # Chat reaches the app (its model is not loaded here: 503); Azure's api-version query is accepted.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="slmlab.request"):
        answer = client.post("/openai/v1/chat/completions?api-version=preview", json=QUESTION,
                             headers={"api-key": KEY})
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_not_ready"
    logged = [r.fields["path"] for r in caplog.records if hasattr(r, "fields") and "path" in r.fields]
    assert logged == ["/openai/v1/chat/completions"]  # the log keeps the path the client sent
    # Azure's other v1 routes do not exist here, and only /openai/v1 itself is an alias.
    assert client.post("/openai/v1/responses", json={}, headers={"api-key": KEY}).status_code == 404
    assert client.get("/openai/v10/models", headers={"api-key": KEY}).status_code == 404
    assert client.get("/openai/v1/models").status_code == 401
    metrics = client.get("/metrics").text  # one route, whichever path was used: dashboards and alerts hold
    assert 'slmlab_http_requests_total{method="GET",route="/v1/models",status="200"} 6.0' in metrics
    assert 'route="/openai' not in metrics


@pytest.mark.fast
def test_429_past_the_rate_limit_per_key_with_retry_after():
    client = TestClient(_app(api_keys=(KEY, OTHER_KEY), rate_limit="2/minute"))
    codes = [client.get("/v1/models", headers=_bearer(KEY)).status_code for _ in range(2)]
    assert codes == [200, 200]
    limited = client.get("/v1/models", headers=_bearer(KEY))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30  # one request per 30 s
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in limited.json()["error"]["message"]
    assert client.get("/v1/models", headers=_bearer(OTHER_KEY)).status_code == 200  # its own bucket
    assert client.get("/healthz").status_code == 200  # probes are not limited
    assert 'slmlab_http_rejected_total{reason="rate_limited"} 1.0' in client.get("/metrics").text


@pytest.mark.fast
def test_429_per_client_address_when_auth_is_off():
    client = TestClient(_app(rate_limit="1/minute"))
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/models").status_code == 429


@pytest.mark.fast
def test_413_past_the_body_cap_declared_or_streamed():
    client = TestClient(_app(api_keys=(KEY,), max_body_bytes=1000))
    big = {"messages": [{"role": "user", "content": "x" * 2000}]}
    answer = client.post("/v1/chat/completions", json=big, headers=_bearer(KEY))
    assert answer.status_code == 413
    message = answer.json()["error"]["message"]
    assert "this server accepts at most 1000 bytes" in message and "is 20" in message  # the body's size

    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}]}'

    answer = client.post("/v1/chat/completions", content=chunks(), headers={**_bearer(KEY),
                                                                            "content-type": "application/json"})
    assert answer.status_code == 413 and "at most 1000 bytes" in answer.text
    small = client.post("/v1/chat/completions", json=QUESTION, headers=_bearer(KEY))
    assert small.status_code == 503  # within the cap: reaches the (unloaded) model
    # The key is checked before the body is read: no key, no 413 oracle.
    assert client.post("/v1/chat/completions", json=big).status_code == 401


@pytest.mark.fast
def test_cors_is_off_by_default_and_exact_when_on():
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    client = TestClient(_app())
    answer = client.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in client.get("/v1/models", headers={"Origin": "http://a.b"}).headers
    client = TestClient(_app(api_keys=(KEY,), cors_origins=("http://127.0.0.1:3000",)))
    allowed = client.options("/v1/chat/completions", headers={**preflight, "Origin": "http://127.0.0.1:3000"})
    assert allowed.status_code == 200  # a preflight needs no key
    assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:3000"
    denied = client.options("/v1/chat/completions", headers=preflight)
    assert denied.headers.get("access-control-allow-origin") != "http://evil.example"
    with pytest.raises(SlmLabError, match="any web page"):
        add_cors(object(), ["*"])


@pytest.mark.fast
def test_security_headers_and_no_docs_by_default():
    client = TestClient(_app())
    answer = client.get("/healthz")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "no-referrer"
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404
    assert TestClient(_app(docs=True)).get("/openapi.json").status_code == 200


# ---------------------------------------------------------------- slow: real generations

@pytest.fixture(scope="module")
def served():
    with TestClient(_app(api_keys=(KEY,), max_tokens_cap=16)) as client:
        assert client.get("/readyz").status_code in (200, 503)
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            import time

            time.sleep(0.1)
        yield client


@pytest.mark.slow
def test_max_tokens_cap_and_context_limit_are_400s_that_say_the_limit(served):
    answer = served.post("/v1/chat/completions", json={**QUESTION, "max_tokens": 17}, headers=_bearer(KEY))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "max_tokens" and "limit of 16 tokens" in error["message"]
    long_prompt = {"messages": [{"role": "user", "content": "word " * 700}], "max_tokens": 4}
    answer = served.post("/v1/chat/completions", json=long_prompt, headers=_bearer(KEY))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "the context is 512" in error["message"]
    ok = served.post("/v1/chat/completions", json={**QUESTION, "max_tokens": 16}, headers=_bearer(KEY))
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 16
    assert served.get("/readyz").status_code == 200  # client errors do not make the model unready


@pytest.mark.slow
def test_keys_never_reach_the_server_log(tmp_path, caplog):
    secret = tmp_path / "keys"
    secret.write_text(KEY + "\n")
    os.chmod(secret, 0o600)
    caplog.set_level(logging.DEBUG)
    with app_server(api_keys_file=secret, n_ctx=512, max_tokens=8, log_level="debug") as server:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=120) as client:
            assert client.get("/v1/models").status_code == 401
            assert client.get("/v1/models", headers=_bearer("sk-wrong-key-0000000000")).status_code == 401
            answer = client.post("/v1/chat/completions", json={**QUESTION, "max_tokens": 4}, headers=_bearer(KEY))
            assert answer.status_code == 200
        log = server.log_path.read_text()
    assert "POST /v1/chat/completions" in log and "API keys: 1 configured" in log
    assert KEY not in log and "sk-wrong-key" not in log and KEY not in caplog.text
