"""slmlab.languages.flaky: the first requests get 503, the rest reach the upstream; every attempt is logged."""

from __future__ import annotations

import sys

import httpx
import pytest

from slmlab.languages.flaky import flaky_server, reset, seen
from slmlab.process import ServerProcess

pytestmark = pytest.mark.fast


def test_two_503s_then_the_upstreams_answer(tmp_path):
    (tmp_path / "hello.json").write_text('{"hello": "world"}')
    upstream = ServerProcess([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory",
                              str(tmp_path)], ready_url="/", name="files")
    with upstream, flaky_server(upstream.url, fail=2) as flaky:
        with httpx.Client(base_url=flaky.url, trust_env=False) as http:
            answers = [http.get("/hello.json") for _ in range(3)]
            assert [a.status_code for a in answers] == [503, 503, 200]
            assert answers[0].headers["retry-after"] == "1" and "on purpose" in answers[0].json()["error"]
            assert answers[2].json() == {"hello": "world"}
            assert http.get("/missing").status_code == 404  # the upstream's own error, passed on
        log = seen(flaky)
        assert [entry["status"] for entry in log] == [503, 503, None, None]
        assert log[0]["t"] <= log[1]["t"] <= log[2]["t"]
        reset(flaky, fail=1)
        assert httpx.get(f"{flaky.url}/hello.json", trust_env=False).status_code == 503
        assert len(seen(flaky)) == 1
