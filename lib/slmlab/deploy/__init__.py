"""Ship it: one DeploymentSpec rendered into Dockerfiles, a compose file, Prometheus config and Kubernetes
manifests, each validated by the tool the field uses (hadolint, the Compose schema, kubernetes-validate)
and by our own policy checker.

    from slmlab import deploy
    spec = deploy.DeploymentSpec(engine="llamacpp-server", model="smollm2-135m-instruct", hardware="laptop-8gb")
    files = deploy.render_all(spec)            # {"docker/engine.Dockerfile": "...", "k8s/...": ...}
    deploy.write_bundle(files, "out/")
    print(deploy.check_dir("out/").summary())   # every checker's findings, each a deploy.Finding

Modules: `spec` (the spec and its checks), `images` (the serving engines' container images), `templating`
(Jinja2), one module per artifact (`docker`, `compose`, `prometheus`, `k8s`, `adapter`), `render` (all of
them), `policy`, `findings` and `check` (validating a rendered folder).
"""

from slmlab.deploy.check import CheckReport, check_dir
from slmlab.deploy.findings import Finding
from slmlab.deploy.images import SERVING_IMAGES, ServingImage, get_serving_image
from slmlab.deploy.policy import check_bundle, check_manifest, check_text
from slmlab.deploy.render import render_all, render_to, write_bundle
from slmlab.deploy.spec import (
                                DeploymentSpec,
                                Plan,
                                SpecError,
                                SpecProblem,
                                load_spec,
                                memory_request_mi,
                                spec_from_dict,
)

__all__ = ["SERVING_IMAGES", "CheckReport", "DeploymentSpec", "Finding", "Plan", "ServingImage", "SpecError",
           "SpecProblem", "check_bundle", "check_dir", "check_manifest", "check_text", "get_serving_image", "load_spec",
           "memory_request_mi", "render_all", "render_to", "spec_from_dict", "write_bundle"]
