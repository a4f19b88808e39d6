"""The course-only containers.conf: both settings written and explained, read by podman's own TOML rules,
and a missing or older file named with the command that writes it."""

from __future__ import annotations

import resource
import tomllib

import pytest

from slmlab.containers import config
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMLAB_CACHE", str(tmp_path))
    return tmp_path


def test_the_file_sets_runc_and_the_ulimits_and_explains_both():
    text = config.config_text(config.Ulimits(20000, 4096))
    data = tomllib.loads(text)
    assert data["engine"]["runtime"] == "runc"
    assert data["containers"]["default_ulimits"] == ["nofile=20000:20000", "nproc=4096:4096"]
    assert "cgroups in hybrid mode not supported" in text and "EPERM" in text and "CONTAINERS_CONF" in text


def test_the_limits_asked_for_never_exceed_this_machines_hard_limits():
    limits = config.host_ulimits()
    for value, which, cap in ((limits.nofile, resource.RLIMIT_NOFILE, config.MAX_NOFILE),
                              (limits.nproc, resource.RLIMIT_NPROC, config.MAX_NPROC)):
        hard = resource.getrlimit(which)[1]
        assert 0 < value <= cap and (hard == resource.RLIM_INFINITY or value <= hard)


def test_written_under_the_course_cache_and_then_required_without_error(cache):
    path = config.write_config(config.Ulimits(1024, 512))
    assert path == cache / "containers" / "containers.conf"
    assert config.require_config() == path
    assert config.config_version() == config.CONFIG_VERSION


def test_a_missing_or_older_file_names_the_setup_command(cache):
    with pytest.raises(SlmLabError, match="are missing") as err:
        config.require_config()
    assert "slmlab setup containers" in err.value.hint
    path = config.write_config()
    path.write_text(path.read_text().replace(f"version: {config.CONFIG_VERSION}", "version: 0"))
    with pytest.raises(SlmLabError, match=r"are out of date \(version 0\)"):
        config.require_config()
