"""The base image's recipe: debootstrap's command, the slimming (licences kept), the versioned tag, and the
commands a non-root learner is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmlab.containers import base_image

pytestmark = pytest.mark.fast


def test_the_tag_is_versioned_by_suite_and_recipe():
    assert base_image.base_image_ref() == f"localhost/slmlab-base:bookworm-r{base_image.BASE_RECIPE}"


def test_debootstrap_builds_a_minimal_debian_with_what_the_images_need():
    cmd = base_image.debootstrap_command(Path("/x"), "http://deb.debian.org/debian")
    assert cmd[:2] == ["debootstrap", "--variant=minbase"] and cmd[-3:] == ["bookworm", "/x",
                                                                             "http://deb.debian.org/debian"]
    assert {"python3", "python3-venv", "ca-certificates", "curl"} <= set(cmd[2].split("=", 1)[1].split(","))


def test_slim_drops_caches_and_docs_but_keeps_licences(tmp_path):
    files = ["var/cache/apt/archives/curl_7.88.deb", "var/cache/apt/archives/lock",
             "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", "var/lib/apt/lists/lock",
             "usr/share/man/man1/curl.1.gz", "usr/share/locale/de/LC_MESSAGES/apt.mo", "usr/share/locale/locale.alias",
             "usr/share/doc/curl/copyright", "usr/share/doc/curl/changelog.Debian.gz", "usr/bin/curl"]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "usr/share/doc/libcurl4").symlink_to("curl")  # Debian links some doc folders to others
    base_image.slim(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["etc/apt/apt.conf.d/docker-clean", "usr/bin/curl", "usr/share/doc/curl/copyright",
                    "usr/share/locale/locale.alias",
                    "var/cache/apt/archives/lock", "var/lib/apt/lists/lock"]
    assert (tmp_path / "usr/share/doc/libcurl4").is_symlink()
    assert 'Dir::Cache::pkgcache "";' in (tmp_path / "etc/apt/apt.conf.d/docker-clean").read_text()


def test_without_root_the_learner_gets_the_commands_to_run():
    lines = base_image.manual_commands("localhost/slmlab-base:bookworm-r1", "http://m/debian")
    assert lines[0].startswith("sudo debootstrap --variant=minbase")
    assert lines[1] == "sudo tar -C /tmp/slmlab-base -c . | podman import - localhost/slmlab-base:bookworm-r1"
