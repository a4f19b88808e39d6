"""`slmlab doctor`'s rows for containers: the runtime (docker or podman, its version, whether the course's
containers.conf is in force), helm and checkov. All optional: only the container sections of part 3 need them,
and Binder has no container runtime (those cells say so and skip)."""

from __future__ import annotations

from typing import NamedTuple

from slmlab.errors import SlmLabError


class Check(NamedTuple):
    """One row: doctor shows it as its own `Check` (these are optional: required=False)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_container_runtime() -> Check:
    """docker or podman, its version, and (podman) whether `podman info` runs with the course's settings."""
    from slmlab.containers import config
    from slmlab.containers.runtime import find_runtime

    try:
        runtime = find_runtime()
    except SlmLabError as err:
        return Check("container runtime", False, err.problem, err.hint)
    version = runtime.run(["--version"], check=False, timeout=30).stdout.strip() or runtime.name
    if runtime.name == "docker":
        return Check("container runtime", True, f"{version} (daemon answers)")
    info = runtime.run(["info", "--format", "{{.Host.OCIRuntime.Name}}"], check=False, timeout=60)
    in_force = info.returncode == 0 and info.stdout.strip() == config.OCI_RUNTIME
    if not in_force:
        return Check("container runtime", False, f"{version}: `podman info` with {runtime.config} says "
                     f"{(info.stdout or info.stderr).strip()[-200:]!r}",
                     "Run: slmlab setup containers  (it writes the course's settings and tests them)")
    return Check("container runtime", True, f"{version}, course settings in force ({config.OCI_RUNTIME}, "
                 f"{runtime.config})")


def check_helm() -> Check:
    """The official helm the bundle's chart is linted and rendered with (`slmlab setup helm`)."""
    from slmlab.setup.helm import helm_program, helm_version

    try:
        program = helm_program()
    except SlmLabError as err:
        return Check("helm", False, err.problem, err.hint)
    return Check("helm", True, f"{helm_version(program)}, {program}")


def check_checkov() -> Check:
    """checkov, the IaC scanner, in its own venv (`slmlab setup checkov`); not started here (it takes seconds)."""
    from slmlab.setup.checkov_env import CHECKOV_PIN, checkov_program

    try:
        program = checkov_program()
    except SlmLabError as err:
        return Check("checkov", False, err.problem, err.hint)
    return Check("checkov", True, f"{CHECKOV_PIN.split('==')[1]}, {program}")


def container_checks() -> list[Check]:
    """The three rows, in the order doctor shows them."""
    return [check_container_runtime(), check_helm(), check_checkov()]
