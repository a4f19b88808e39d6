"""`slmlab setup containers` as the `setup` group adds it, and its package step."""

from __future__ import annotations

import argparse

import pytest

from slmlab.cli.containers_setup import add_setup_parser, cmd_setup_containers
from slmlab.containers import packages, prepare
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def setup_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmlab setup")
    add_setup_parser(parser.add_subparsers(dest="what", required=True))
    return parser


def test_the_subcommand_and_its_options():
    args = setup_parser().parse_args(["containers", "--mirror", "http://m/debian", "--force", "--no-install"])
    assert (args.what, args.mirror, args.force, args.no_install) == ("containers", "http://m/debian", True, True)
    assert args.func is cmd_setup_containers
    assert setup_parser().parse_args(["containers"]).mirror is None


def test_a_package_that_is_not_installed_is_reported_missing():
    assert packages.missing(["slmlab-no-such-package", "coreutils"]) == ["slmlab-no-such-package"]
    assert packages.apt_line(["podman", "runc"]) == "sudo apt-get install -y podman runc"


def test_missing_packages_without_install_give_the_apt_line(monkeypatch):
    monkeypatch.setattr(prepare, "needed_packages", lambda: ["podman", "debootstrap"])
    with pytest.raises(SlmLabError, match="missing: podman, debootstrap") as err:
        prepare.install_packages(install=False)
    assert "sudo apt-get install -y podman debootstrap" in err.value.hint
    monkeypatch.setattr(prepare, "needed_packages", lambda: [])
    assert prepare.install_packages(install=False) == "installed already"
