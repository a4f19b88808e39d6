"""Run the course's containers: which CLI (docker when its daemon answers, else podman with the course's own
containers.conf), the local base image made without a registry, building images, running hardened containers on
127.0.0.1 and playing Kubernetes YAML with `podman kube play` — each always cleaned up.

    from slmlab.containers import runtime
    rt = runtime.find_runtime()                      # a clear error when there is none
    ...

Modules: `config` (the course-only containers.conf), `runtime` (which CLI, running it), `packages` (apt),
`mirror` (apt's Debian mirror), `base_image` (debootstrap + import), `build` (an image from a Dockerfile),
`run` (a container as a context manager), `kube` (`kube play` / `kube down`).
"""
