"""`slmlab deploy render SPEC.yaml --out DIR`, `deploy check DIR`, and with a container runtime `deploy build DIR`,
`deploy run DIR` and `deploy play DIR` (registered by slmlab.cli)."""

from __future__ import annotations

import argparse


def cmd_render(args: argparse.Namespace) -> int:
    """Validate the spec, render every artifact into --out, then check them."""
    from slmlab.deploy.check import check_dir
    from slmlab.deploy.render import render_to
    from slmlab.deploy.spec import load_spec

    spec = load_spec(args.spec)
    written = render_to(spec, args.out)
    for path in written:
        print(f"wrote {path}")
    if args.no_check:
        return 0
    report = check_dir(args.out)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    """hadolint, compose schema, Kubernetes schemas and policy on a rendered folder; exit 1 on any finding."""
    from slmlab.deploy.check import check_dir

    report = check_dir(args.folder, scan=args.scan)
    print(report.summary())
    if not args.helm:
        return 0 if report.ok else 1
    from slmlab.deploy.helm_check import check_chart

    chart = check_chart(args.folder, scan=args.scan)
    print("the Helm chart (helm lint, then helm template's output):\n" + chart.summary())
    return 0 if report.ok and chart.ok else 1


def cmd_build(args: argparse.Namespace) -> int:
    """Build the bundle's images (online from the upstream images, or offline from the course's local ones)."""
    from pathlib import Path

    from slmlab.containers.runtime import find_runtime
    from slmlab.deploy.build import build_bundle

    offline = True if args.offline else False if args.online else None
    result = build_bundle(args.folder, find_runtime(), offline=offline, components=args.only or ("engine", "gateway"),
                          weights=Path(args.weights) if args.weights else None)
    for line in result.lines():
        print(line)
    return 0


def _serve_until_interrupted(started: object, lines: list[str], check: bool, base_url: str, key: str,
                             model: str) -> int:
    """Print where it runs; with --check ask one question through the gateway, else wait for Ctrl-C."""
    import time

    from slmlab.deploy.run import ask

    for line in lines:
        print(line)
    if check:
        answer = ask(base_url, key, model)
        print(f"asked through the gateway ({answer['seconds']} s, {answer['completion_tokens']} tokens): "
              f"{answer['text']!r}")
        return 0
    print("running; Ctrl-C stops and removes everything")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the engine and gateway containers as the manifests harden them, on 127.0.0.1."""
    from slmlab.containers.runtime import find_runtime
    from slmlab.deploy.run import BundleRun, bundle_api_key

    key, key_file = bundle_api_key(args.folder)
    with BundleRun(args.folder, find_runtime(), components=args.only or ("engine", "gateway"), api_key=key) as run:
        lines = [f"{box.name}: {box.url()} (ready in {box.startup_s:.1f} s)" for box in (run.engine, run.gateway)
                 if box is not None]
        lines.append(f"API key: {key_file}")
        if args.load:
            from slmlab.deploy.observe import bundle_prometheus, load_through

            with bundle_prometheus(run) as prom:
                lines += load_through(run, prom, num_requests=args.load).lines()
        base = run.base_url if run.gateway else (run.engine.url() + "/v1" if run.engine else "")
        return _serve_until_interrupted(run, lines, args.check, base, run.api_key, run.plan.served_name)


def cmd_play(args: argparse.Namespace) -> int:
    """podman kube play of the Deployments, their Secret and ConfigMap; the rest validated, not run."""
    from slmlab.containers.runtime import find_runtime
    from slmlab.deploy.check import check_dir
    from slmlab.deploy.play import BundlePlay, not_played
    from slmlab.deploy.run import bundle_api_key

    key, key_file = bundle_api_key(args.folder)
    with BundlePlay(args.folder, find_runtime(), api_key=key) as play:
        lines = [f"{pod.name}: {play.url(component)} ({play.healthcheck(component)})"
                 for component, pod in play.pods.items()]
        lines += [f"changed for podman: {change}" for change in play.changes]
        lines += [f"not run by podman: {subject} ({why})" for subject, why in not_played(play.manifests)]
        report = check_dir(args.folder)
        lines.append("validated instead: " + ("every checker passed" if report.ok else "\n" + report.summary()))
        lines.append(f"API key (the Secret's api-key, mounted as a file): {key_file}")
        return _serve_until_interrupted(play, lines, args.check, play.base_url, key, play.plan.served_name)


def cmd_compose(args: argparse.Namespace) -> int:
    """The rendered compose.yaml up with docker compose or podman-compose, checked, then down."""
    from slmlab.containers.runtime import find_runtime
    from slmlab.deploy.compose_up import BundleCompose

    with BundleCompose(args.folder, find_runtime(), gateway_port=args.port) as up:
        lines = [*up.notes, *(f"{service}: {box['name']} ({box['state']})" for service, box in up.containers().items())]
        lines += [f"compose's Prometheus: {row['job']} {row['health']}" for row in up.prometheus_targets()]
        return _serve_until_interrupted(up, lines, args.check, up.base_url, up.api_key, up.plan.served_name)


def cmd_drill(args: argparse.Namespace) -> int:
    """The memory drill (OOM) and/or the fault drill (engine killed under load) on a built bundle."""
    from slmlab.containers.runtime import find_runtime
    from slmlab.deploy.drills import fault_drill, memory_drill

    runtime = find_runtime()
    if args.memory or not args.fault:
        for trial in memory_drill(args.folder, runtime, prompt_tokens=args.prompt_tokens):
            print(trial.line())
            if trial.kernel:
                print(f"    kernel: {trial.kernel}")
    if args.fault or not args.memory:
        for line in fault_drill(args.folder, runtime).lines():
            print(line)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `deploy render` and `deploy check` to the `slmlab` command."""
    deploy = subparsers.add_parser("deploy", help="render and validate Dockerfiles, compose and Kubernetes manifests")
    sub = deploy.add_subparsers(dest="deploy_command", required=True)
    render = sub.add_parser("render", help="render every artifact of a deployment spec (YAML) and check them")
    render.add_argument("spec", metavar="SPEC.yaml", help="deployment spec: engine, model, quantization, hardware, ...")
    render.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    render.add_argument("--no-check", action="store_true", help="write only; skip hadolint and the validators")
    render.set_defaults(func=cmd_render)
    check = sub.add_parser("check", help="run hadolint, the compose schema, kubernetes-validate and the policy checker")
    check.add_argument("folder", metavar="DIR", help="a folder written by `slmlab deploy render`")
    check.add_argument("--scan", action="store_true", help="also run checkov, the field's IaC scanner "
                       "(`slmlab setup checkov` installs it)")
    check.add_argument("--helm", action="store_true", help="also check the Helm chart: helm lint, then the same "
                       "checks on what helm template renders (`slmlab setup helm` installs helm)")
    check.set_defaults(func=cmd_check)
    _register_build(sub)


def _folder_and_check(parser: argparse.ArgumentParser) -> None:
    """The arguments every command that starts the bundle takes: its folder, and --check."""
    parser.add_argument("folder", metavar="DIR", help="a rendered and built folder")
    parser.add_argument("--check", action="store_true", help="ask one question through the gateway, then stop")


def _register_build(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser(
        "build", help="build the engine and gateway images of a rendered folder (docker, else podman)",
        description="Build the images of a folder written by `slmlab deploy render`, tagged as its manifests name "
                    "them. Online: the Dockerfiles' defaults (upstream images, weights from the Hugging Face hub). "
                    "Offline (by default when a registry or the hub does not answer): the same Dockerfiles with "
                    "other build arguments: the course's local base image (`slmlab setup containers`), llama-server "
                    "from the course's llama.cpp build (`slmlab setup llamacpp`), weights from the build context.")
    build.add_argument("folder", metavar="DIR", help="a folder written by `slmlab deploy render`")
    mode = build.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="build from the local images and bundled weights")
    mode.add_argument("--online", action="store_true", help="build from the upstream images and the hub")
    build.add_argument("--weights", metavar="PATH", help="offline: the GGUF file (or ONNX folder) to put in the "
                       "image (default: the bundled model, or the ONNX folder `slmlab setup onnx` cached)")
    build.add_argument("--only", choices=("engine", "gateway"), action="append", help="build only this image")
    build.set_defaults(func=cmd_build)
    run = sub.add_parser("run", help="run the built engine and gateway, hardened as the manifests say, on 127.0.0.1",
                         description="Run the images `slmlab deploy build` made with the flags the Kubernetes "
                                     "manifests imply: user, read-only root, no capabilities, tmpfs for emptyDirs, "
                                     "the Secret as a read-only file (secrets/api-keys), memory and CPU limits.")
    _folder_and_check(run)
    run.add_argument("--only", choices=("engine", "gateway"), action="append", help="run only this one")
    run.add_argument("--load", type=int, metavar="N", help="first send N requests through the gateway (the course's "
                     "load test) while Prometheus scrapes both containers, and print what it counted")
    run.set_defaults(func=cmd_run)
    play = sub.add_parser("play", help="podman kube play the Deployments with their Secret and ConfigMap",
                          description="`podman kube play` of the rendered engine and gateway Deployments with a Secret "
                                      "(the key in secrets/api-keys) and the gateway's ConfigMap. Services, the HPA, "
                                      "PodDisruptionBudgets and NetworkPolicies are not run by podman: they are "
                                      "validated instead. Everything is removed when it stops.")
    _folder_and_check(play)
    play.set_defaults(func=cmd_play)
    compose = sub.add_parser("compose", help="run the rendered compose.yaml (docker compose or podman-compose)",
                             description="`docker compose up` (where a Docker daemon answers) or `podman-compose up` "
                                         "of the rendered compose.yaml with the built images: engine, gateway and "
                                         "Prometheus, hardened as the file says, the gateway and Prometheus on "
                                         "127.0.0.1 only. Everything is removed (`down -v`) when it stops.")
    _folder_and_check(compose)
    compose.add_argument("--port", type=int, help="the gateway's port on 127.0.0.1 (default: a free one)")
    compose.set_defaults(func=cmd_compose)
    drill = sub.add_parser("drill", help="break the running bundle: too little memory (OOM), the engine killed",
                           description="--memory: the engine under its computed memory limit, 30 %% below it, and "
                                       "below its anonymous memory, each under long-context requests (peaks measured, "
                                       "OOM kills named with the kernel's line). --fault: the engine killed under load "
                                       "with `restart: always`; what a client with and without retries sees.")
    drill.add_argument("folder", metavar="DIR", help="a rendered and built llama.cpp folder")
    drill.add_argument("--memory", action="store_true", help="only the memory drill")
    drill.add_argument("--fault", action="store_true", help="only the fault drill")
    drill.add_argument("--prompt-tokens", type=int, default=2000, help="tokens per long request (default 2000)")
    drill.set_defaults(func=cmd_drill)
