"""Scaling out: N model-server replicas behind nginx, client retries, and a Kubernetes HPA simulation.

- `slmlab.scaling.replicas`  — start N llama.cpp server replicas together, kill and restart one;
- `slmlab.scaling.nginx_lb`  — generate, validate (``nginx -t``) and run an nginx load balancer over them;
- `slmlab.scaling.retry`     — a streaming chat client that retries failed requests (and counts what is lost);
- `slmlab.scaling.autoscale` — per-replica capacity from load tests, an HPA target, and a replay of a traffic
  trace through the HorizontalPodAutoscaler's documented algorithm.
"""
