"""The Debian mirror apt already uses on this machine (read from /etc/apt/sources.list and sources.list.d),
so the base image is built from the same place as the host's own packages: no registry, no new address."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmlab.errors import SlmLabError
from slmlab.textfiles import read_text

APT_SOURCES = Path("/etc/apt")


@dataclass(frozen=True)
class AptSource:
    """One `deb` line (or deb822 stanza): where, which suites."""

    uri: str
    suites: tuple[str, ...]
    file: str


def _one_line_sources(text: str, file: str) -> list[AptSource]:
    """`deb [options] URI suite components` lines."""
    found = []
    for raw in text.splitlines():
        parts = raw.split("#", 1)[0].split()
        if len(parts) < 3 or parts[0] != "deb":
            continue
        rest = parts[1:]
        if rest[0].startswith("["):  # [arch=amd64 signed-by=...] may span several words
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            found.append(AptSource(rest[0].rstrip("/"), (rest[1],), file))
    return found


def _deb822_sources(text: str, file: str) -> list[AptSource]:
    """deb822 stanzas (Types / URIs / Suites), separated by blank lines."""
    found = []
    for stanza in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            found += [AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()), file)
                      for uri in fields.get("uris", "").split()]
    return found


def apt_sources(root: Path = APT_SOURCES) -> list[AptSource]:
    """Every `deb` source apt is configured with."""
    files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list")),
             *sorted((root / "sources.list.d").glob("*.sources"))]
    found: list[AptSource] = []
    for path in files:
        if path.is_file():
            text = read_text(path, "apt source list")
            found += (_deb822_sources if path.suffix == ".sources" else _one_line_sources)(text, str(path))
    return found


def debian_mirror(suite: str, root: Path = APT_SOURCES) -> str:
    """The URI of a source that carries `suite` itself (not -security/-updates), e.g. http://deb.debian.org/debian."""
    sources = apt_sources(root)
    for source in sources:
        if suite in source.suites:
            return source.uri
    seen = ", ".join(sorted({f"{s.uri} ({' '.join(s.suites)})" for s in sources})) or "none"
    raise SlmLabError(f"apt has no source for Debian '{suite}' in {root}/sources.list*, so there is no mirror to "
                      f"build the base image from (sources found: {seen}).",
                      "Pass the mirror yourself: slmlab setup containers --mirror http://deb.debian.org/debian")
