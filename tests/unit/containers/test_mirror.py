"""The Debian mirror for the base image is read from apt's own sources, in both of apt's formats."""

from __future__ import annotations

import pytest

from slmlab.containers.mirror import apt_sources, debian_mirror
from slmlab.errors import SlmLabError

pytestmark = pytest.mark.fast


def write(root, name, text):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_main_suite_is_found_in_a_deb822_file_and_security_is_skipped(tmp_path):
    write(tmp_path, "sources.list.d/debian.sources",
          "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian-security/\nSuites: bookworm-security\n"
          "Components: main\n\nTypes: deb deb-src\nURIs: http://mirror.example/debian/\n"
          "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert debian_mirror("bookworm", tmp_path) == "http://mirror.example/debian"


def test_one_line_sources_with_options_and_deb_src_lines(tmp_path):
    write(tmp_path, "sources.list", "deb-src http://src.example/debian bookworm main\n"
          "deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://ftp.example/debian bookworm main # x\n")
    write(tmp_path, "sources.list.d/other.list", "deb https://packages.example/apt cloud-sdk main\n")
    assert [s.uri for s in apt_sources(tmp_path)] == ["http://ftp.example/debian", "https://packages.example/apt"]
    assert debian_mirror("bookworm", tmp_path) == "http://ftp.example/debian"


def test_no_source_for_the_suite_says_which_were_found_and_how_to_pass_one(tmp_path):
    write(tmp_path, "sources.list", "deb http://archive.ubuntu.com/ubuntu noble main\n")
    with pytest.raises(SlmLabError, match="no source for Debian 'bookworm'") as err:
        debian_mirror("bookworm", tmp_path)
    assert "archive.ubuntu.com" in err.value.problem and "--mirror" in err.value.hint


def test_a_disabled_stanza_is_not_used(tmp_path):
    write(tmp_path, "sources.list.d/d.sources", "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\n"
          "Enabled: no\n")
    with pytest.raises(SlmLabError):
        debian_mirror("bookworm", tmp_path)
