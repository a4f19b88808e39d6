# syntax=docker/dockerfile:1
# The course's local stand-in for ghcr.io/ggml-org/llama.cpp:server-<build>, for builds without a registry:
# the llama-server that `slmlab setup llamacpp` compiled from the pinned llama.cpp source (the tree the course's
# llama-cpp-python vendors), on the course's Debian base image, laid out like llama.cpp's own server image
# (/app/llama-server, WORKDIR /app, curl for the health check). It is built for this machine's CPU
# (GGML_NATIVE): rebuild it rather than copy it to another machine.
ARG BASE_IMAGE=localhost/slmlab-base:bookworm-r1
FROM ${BASE_IMAGE}
COPY llama-server /app/llama-server
COPY LICENSE /app/LICENSE-llama.cpp
ENV LLAMA_ARG_HOST=0.0.0.0
WORKDIR /app
HEALTHCHECK CMD ["curl", "-f", "http://localhost:8080/health"]
ENTRYPOINT ["/app/llama-server"]
