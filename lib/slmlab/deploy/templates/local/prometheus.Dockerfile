# syntax=docker/dockerfile:1
# The course's local stand-in for prom/prometheus (the compose file's PROMETHEUS_IMAGE), for runs without a registry:
# the prometheus that the Debian package installs on this machine (`slmlab doctor` lists it), on the course's Debian
# base image, laid out like the upstream image: /bin/prometheus as the entrypoint, user nobody, /prometheus (the
# TSDB volume) owned by it. Its web UI's assets are left out (220 MB of Debian's JavaScript packages): the HTTP
# API, which the course queries, needs none. Debian's Prometheus is an older release than the upstream pin: the
# compose file's scrape jobs use nothing newer.
ARG BASE_IMAGE=localhost/slmlab-base:bookworm-r2
FROM ${BASE_IMAGE}
COPY prometheus /bin/prometheus
COPY copyright /licenses/prometheus/copyright
RUN mkdir -p /prometheus /etc/prometheus && chown 65534:65534 /prometheus
USER 65534:65534
EXPOSE 9090
WORKDIR /prometheus
HEALTHCHECK CMD ["curl", "-fsS", "http://127.0.0.1:9090/-/healthy"]
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
