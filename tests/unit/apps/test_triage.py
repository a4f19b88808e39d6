"""The triage app (slmlab.apps): its pure parts, the planted v2 regression, the quality helpers, the pytest runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmlab.apps import pytest_run, quality, triage, triage_v2
from slmlab.apps.triage import CATEGORIES, FALLBACK, URGENCIES, Ticket
from slmlab.errors import SlmLabError

tickets = st.builds(Ticket, urgency=st.sampled_from(URGENCIES), category=st.sampled_from(CATEGORIES + ("other",)))


# ----------------------------------------------------------------------------- pure parts of v1


@pytest.mark.fast
@pytest.mark.parametrize("reply, expected", [
    ('{"urgency": "high", "category": "billing"}', Ticket(urgency="high", category="billing")),
    ('Sure! ```json\n{"urgency": "low", "category": "Tracking"}\n``` Hope it helps {',
     Ticket(urgency="low", category="shipping")),
    ("{'urgency': 'urgent', 'category': ' ACCOUNT '", Ticket(urgency="high", category="account")),
    ('{"urgency": "high", "category": "weather"}', Ticket(urgency="high", category="other")),
    ('["billing"]', FALLBACK),
    ("", FALLBACK),
])
def test_v1_parses_json_almost_json_and_falls_back(reply, expected):
    assert triage.parse_reply(reply) == expected


@pytest.mark.fast
@settings(max_examples=100, deadline=None, database=None)
@given(st.one_of(st.text(), st.text(alphabet='{}"\':, abcdefghilnrstuy\n')))
def test_v1_parser_never_raises(reply):
    assert isinstance(triage.parse_reply(reply), Ticket)


@pytest.mark.fast
@settings(max_examples=50, deadline=None, database=None)
@given(tickets)
def test_v1_parser_round_trips_every_ticket(ticket):
    assert triage.parse_reply(ticket.model_dump_json()) == ticket
    assert triage.parse_reply(json.dumps(ticket.model_dump(), indent=2)) == ticket


@pytest.mark.fast
def test_normalise_label_handles_unicode_whitespace_and_aliases():
    assert triage.normalise_label("\u3000ＢＩＬＬＩＮＧ.\n", CATEGORIES) == "billing"  # full-width, NFKC
    assert triage.normalise_label("Payment", CATEGORIES, triage.CATEGORY_ALIASES) == "billing"
    assert triage.normalise_label("weather", CATEGORIES, triage.CATEGORY_ALIASES) is None
    assert triage.normalise_label(3, CATEGORIES) is None


@pytest.mark.fast
def test_build_messages_trims_the_ticket_and_rejects_empty_text():
    messages = triage.build_messages("  hello  " + "x" * 2000)
    assert messages[0] == {"role": "system", "content": triage.SYSTEM_PROMPT}
    assert len(messages) == 2 + 2 * len(triage.EXAMPLES)
    assert messages[-1]["content"].startswith("hello") and len(messages[-1]["content"]) == triage.MAX_TICKET_CHARS
    with pytest.raises(SlmLabError, match="non-empty"):
        triage.build_messages("   ")


@pytest.mark.fast
def test_examples_in_the_prompt_are_valid_answers():
    for _, answer in triage.EXAMPLES:
        assert triage.parse_reply(answer).category in CATEGORIES


@pytest.mark.fast
def test_unknown_version_is_a_clear_error():
    with pytest.raises(SlmLabError, match="v1, v2"):
        triage.parser_for("v3")


# ----------------------------------------------------------------------------- the planted regression


@pytest.mark.fast
def test_v2_bug_is_real_it_drops_the_last_field():
    reply = '{"urgency": "high", "category": "billing"}'
    assert triage.parse_reply(reply) == Ticket(urgency="high", category="billing")
    assert triage_v2.parse_reply(reply) == Ticket(urgency="high", category="other")  # category was last
    assert triage.parser_for("v2") is triage_v2.parse_reply


@pytest.mark.fast
@settings(max_examples=50, deadline=None, database=None)
@given(st.text())
def test_v2_never_raises_so_crash_tests_miss_it(reply):
    assert isinstance(triage_v2.parse_reply(reply), Ticket)


@pytest.mark.fast
def test_v2_passes_example_tests_whose_last_field_is_irrelevant():
    reply = '{"urgency": "high", "category": "account", "confidence": "0.9"}'
    assert triage_v2.parse_reply(reply) == triage.parse_reply(reply)


@pytest.mark.fast
def test_call_test_tells_a_passing_from_a_failing_property():
    @settings(max_examples=30, deadline=None, database=None)
    @given(tickets)
    def roundtrip(parse, ticket):
        assert parse(ticket.model_dump_json()) == ticket

    assert pytest_run.call_test(roundtrip, triage.parse_reply) is None
    failure = pytest_run.call_test(roundtrip, triage_v2.parse_reply)
    assert failure is not None and failure.startswith("AssertionError")


# ----------------------------------------------------------------------------- quality helpers


@pytest.mark.fast
def test_cases_file_is_balanced_and_valid():
    cases = quality.load_cases()
    assert len(cases) >= 16 and len({c.id for c in cases}) == len(cases)
    assert {c.expected.category for c in cases} == set(CATEGORIES)
    assert {c.expected.category for c in quality.load_cases(limit=8)} == set(CATEGORIES)
    assert {c.expected.urgency for c in cases} == set(URGENCIES)


@pytest.mark.fast
def test_a_bad_cases_file_names_the_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "x", "urgency": "low", "category": "billing"}\n{"id": "b"}\n')
    with pytest.raises(SlmLabError, match="bad.jsonl line 2"):
        quality.load_cases(path)
    with pytest.raises(SlmLabError, match="No labelled tickets"):
        quality.load_cases(tmp_path / "missing.jsonl")


@pytest.mark.fast
def test_a_cases_file_saved_with_a_bom_and_crlf_reads_the_same(tmp_path: Path):
    plain = quality.CASES_FILE.read_bytes().replace(b"\r\n", b"\n")
    windows = tmp_path / "tickets.jsonl"
    windows.write_bytes(b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n"))
    assert quality.load_cases(windows) == quality.load_cases()


@pytest.mark.fast
def test_percentile_and_budget():
    assert quality.percentile([1.0, 2.0, 3.0, 4.0, 100.0], 50) == 3.0
    assert quality.percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert quality.latency_budget(0.1) == 0.5 and quality.latency_budget(1.0, factor=2) == 2.0
    with pytest.raises(SlmLabError):
        quality.percentile([], 95)
    with pytest.raises(SlmLabError):
        quality.latency_budget(0.0)


@pytest.mark.fast
def test_load_golden_explains_missing_and_broken_files(tmp_path: Path):
    with pytest.raises(SlmLabError, match="record_golden"):
        quality.load_golden(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SlmLabError, match="not a golden file"):
        quality.load_golden(tmp_path / "bad.json")


@pytest.mark.fast
def test_prepare_suite_rejects_a_file_pytest_would_not_collect(tmp_path: Path):
    with pytest.raises(SlmLabError, match="test_mine.py"):
        pytest_run.prepare_suite(tmp_path, {}, {"mine.py": "x = 1"})


# ----------------------------------------------------------------------------- with the model


@pytest.fixture(scope="module")
def backend():
    from slmlab.backends import open_backend

    with open_backend("llamacpp", "smollm2-135m-instruct", n_ctx=1024) as b:
        yield b


@pytest.mark.slow
def test_app_answers_in_json_within_the_token_budget_and_v2_regresses(backend, tmp_path: Path):
    cases = quality.load_cases(limit=4)
    replies: dict = {}
    v1 = quality.run_eval(triage.TriageApp(backend, "v1", cache=replies), cases)
    assert all(row.reply.lstrip().startswith("{") for row in v1.rows)
    assert backend.last.finish_reason == "stop" and backend.last.completion_tokens < triage.DEFAULT_MAX_TOKENS
    v2 = quality.run_eval(triage.TriageApp(backend, "v2", cache=replies), cases)
    assert len(replies) == len(cases)  # v2 sends the same requests: answered from the cache
    assert [r.reply for r in v2.rows] == [r.reply for r in v1.rows]
    assert v1.accuracy >= 0.5 and v2.accuracy == 0.0 and v2.needs_review == 1.0
    golden = quality.record_golden(triage.TriageApp(backend, "v1"), [cases[0].text], tmp_path / "g.json")
    assert quality.load_golden(tmp_path / "g.json") == golden


@pytest.mark.slow
def test_suite_in_a_subprocess_passes_on_v1_and_catches_v2(backend, tmp_path: Path):
    golden = tmp_path / "golden.json"
    quality.record_golden(triage.TriageApp(backend, "v1"), ["Where is my parcel?"], golden)
    config = {"golden": str(golden), "latency_budget_s": 600.0, "latency_calls": 2, "eval_limit": 4,
              "max_examples": 20}
    runs = {}
    for version in ("v1", "v2"):
        suite = pytest_run.prepare_suite(tmp_path / version, {**config, "version": version})
        runs[version] = pytest_run.run_pytest(suite, timeout=300)
    assert runs["v1"].ok, runs["v1"].tail()
    assert not runs["v2"].ok
    assert set(runs["v2"].failures()) == {"test_golden::test_app_result_matches_golden[golden0]",
                                          "test_eval::test_accuracy_on_labelled_tickets_meets_the_threshold"}
    table = pytest_run.compare_runs(runs)
    assert list(table.columns) == ["v1", "v2"] and "passed" in set(table["v1"])
