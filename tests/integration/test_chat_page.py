"""The chat page served by slmlab.serve.gateway.app, in a real headless Chromium driven by Selenium.

The server runs with an API key: the page first meets a 401, shows its key field, and works once the key is
typed. The answer must arrive in several pieces (the page counts them in ``data-chunks``) and equal, word for
word, the greedy answer the API gives to the same question — so the page shows the model's real stream.
Needs Debian's chromium and chromium-driver (README: "Servers for parts 2 and 3"); skipped with that hint
where they are missing (the `browser` fixture: tests/conftest.py).
"""

from __future__ import annotations

import time

import httpx
import pytest

from slmlab.serve.gateway.server import app_server

KEY = "sk-page-0123456789abcdef"
QUESTION = "What is the capital of France?"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLMLAB_LOG_DIR", str(tmp_path_factory.mktemp("server-logs")))
        with app_server(api_keys=[KEY], n_ctx=512, max_tokens=24) as running:
            yield running


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_typing_a_question_shows_a_streamed_answer(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    expected = httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": QUESTION}]},
                          timeout=120, trust_env=False).json()["choices"][0]["message"]["content"]
    assert expected.strip()

    browser.get(server.url + "/")
    assert browser.title == "slmlab chat"
    key_row = browser.find_element(By.ID, "key-row")
    _wait(key_row.is_displayed, 15, "the API-key field (the server answered 401)")
    browser.find_element(By.ID, "api-key").send_keys(KEY + Keys.TAB)  # 'change' reloads the model list
    _wait(lambda: browser.find_element(By.ID, "model").text == "smollm2-135m-instruct", 15, "the model name")

    browser.find_element(By.ID, "question").send_keys(QUESTION + Keys.ENTER)
    answer = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".turn.assistant"), 15, "the answer bubble")[0]
    seen = set()
    state = "streaming"
    deadline = time.monotonic() + 180
    while state == "streaming":  # watch the text grow as the pieces arrive
        seen.add(answer.text)
        state = answer.get_attribute("data-state")
        assert time.monotonic() < deadline, "the answer did not finish"
        time.sleep(0.02)
    assert state == "done", answer.text
    assert answer.text == expected.strip() or answer.text == expected  # textContent, as the model wrote it
    assert int(answer.get_attribute("data-chunks")) > 1
    assert len({text for text in seen if text}) >= 2, "the page showed the answer all at once, not streamed"
    assert browser.find_element(By.CSS_SELECTOR, ".turn.user").text == QUESTION
    assert browser.find_element(By.ID, "send").is_enabled()
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]]
    assert not errors, errors  # no script errors, no CSP violations
