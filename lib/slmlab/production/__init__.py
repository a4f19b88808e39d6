"""Production: what a service needs beyond a valid bundle, checked rather than listed (notebook 3.7).

- :mod:`slmlab.production.readiness` — the readiness checklist evaluated on a rendered bundle and a running
  service (:mod:`~slmlab.production.items` holds the items, :mod:`~slmlab.production.live` asks the service,
  :mod:`~slmlab.production.bundle` reads the bundle);
- :mod:`slmlab.production.layer` — what the rendered bundle lacks: an Ingress with TLS, alerts with runbook
  links, a dashboard, the runbook;
- :mod:`slmlab.production.cicd` — a GitHub Actions workflow and the one script it calls, validated with actionlint
  and zizmor and run here end to end;
- :mod:`slmlab.production.case_study` — Phi-4-mini-instruct sized, rendered, checked and priced without its
  weights; :mod:`slmlab.production.speculative` — the arithmetic of speculative decoding.
"""
