"""Small but real SLM apps, built to be tested (part 2, "Testing SLM apps").

- :mod:`slmlab.apps.triage` — support-ticket triage: prompt, JSON parsing with a fallback, a validated result;
- :mod:`slmlab.apps.triage_v2` — the same app's v2 parser, with a planted regression to catch;
- :mod:`slmlab.apps.quality` — a labelled regression eval, golden files and latency percentiles;
- :mod:`slmlab.apps.pytest_run` — run a pytest suite in a subprocess and read its per-test outcomes.
"""
