"""The lock of the CrossEarth-SAR engine: qgis_plugin/engine.lock, shipped in the plugin zip
and in the installed package (docs/contracts.md §7).

The lock is a pip requirements file written by scripts/lock_engine.py (``uv pip compile
--universal --generate-hashes`` from PyPI): one entry per package and version, each
``name==version [; marker]`` with the SHA-256 of every file of that version, for every
platform (Linux, Windows, macOS) and every Python the engine supports (>= 3.10); a marker
tells where an entry applies (``numpy==2.2.6 ; python_full_version < '3.11'``). uv's
``# via`` lines say why each entry is there (``-r engine.in``: setup.cfg's install_requires
or the packaging tools). Its header holds one line ``# torch==VERSION``: PyTorch is locked
by exact version but has no entry: it comes from the PyTorch index of the engine's backend
(``cpu``, ``cu126``), whose files differ from PyPI's, and is installed after the locked
packages (its own dependencies are locked entries; on Linux, the CUDA runtime of a CUDA
build comes with it from that index).

A setup installs the entries with ``--require-hashes --no-deps`` (:meth:`Lock.requirements`
writes the subset of a step: the packaging tools, or the rest); the wheel folder script
downloads the entries of its target (:func:`target_environment`, markers evaluated here,
since pip evaluates them for the running Python only); ``ces doctor`` compares an engine's
packages with the lock (:func:`differences`). Standard library only at import (QGIS loads
it); markers are evaluated by packaging, or pip's copy of it, when asked
(:func:`marker_matches`).
"""
from __future__ import annotations

import configparser
import platform as _platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

LOCK_FILE = Path(__file__).with_name("engine.lock")
TOOLS = ("pip", "setuptools", "wheel")    # installed first: a build of the package needs them
OPTIONAL = ("uv",)                         # installed only from a wheel folder that holds it
INPUT_NAME = "engine.in"                   # uv's ``-r engine.in``: a requirement of the input
TORCH_LINE = re.compile(r"^# torch==(\S+)", re.MULTILINE)
_ENTRY = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*(.*?))?\s*\\?\s*$")


def normalize(name: str) -> str:
    """A package name as PEP 503 compares it (``PyYAML`` -> ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def install_requires(setup_cfg: Path) -> list[str]:
    """The requirements in [options] install_requires of ``setup_cfg``."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    return [line.strip() for line in parser["options"]["install_requires"].splitlines()
            if line.strip()]


@dataclass(frozen=True)
class Entry:
    """One locked package version: ``text`` is its requirement with its ``--hash`` lines,
    ``via`` what requires it (package names, or ``-r engine.in`` for the input)."""

    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]
    text: str


@dataclass
class Lock:
    """The parsed lock: its header, PyTorch's exact version, and the entries in order."""

    path: Path
    header: str
    torch: str
    entries: list[Entry]

    def names(self) -> set[str]:
        return {e.name for e in self.entries}

    def applicable(self, environment: Mapping[str, str]) -> list[Entry]:
        """The entries whose marker holds in ``environment`` (:func:`target_environment`)."""
        return [e for e in self.entries if not e.marker or marker_matches(e.marker, environment)]

    def requirements(self, include: Optional[Iterable[str]] = None,
                     exclude: Iterable[str] = (),
                     environment: Optional[Mapping[str, str]] = None) -> str:
        """A requirements file of some entries, with their hashes (for ``--require-hashes``):
        those named in ``include`` (all when None) less ``exclude``. With ``environment``,
        only the entries that apply there, without their markers (for ``pip download`` of
        another platform); else with markers, for the installing Python to evaluate."""
        wanted = None if include is None else {normalize(n) for n in include}
        unwanted = {normalize(n) for n in exclude}
        chosen = self.entries if environment is None else self.applicable(environment)
        lines = [f"# from {self.path.name} (torch=={self.torch} is installed on its own)"]
        for entry in chosen:
            if (wanted is None or entry.name in wanted) and entry.name not in unwanted:
                text = entry.text
                if environment is not None and entry.marker:
                    first, _, rest = text.partition("\n")
                    text = f"{entry.name}=={entry.version} \\\n{rest}" if rest else \
                        f"{entry.name}=={entry.version}"
                lines.append(text)
        return "\n".join(lines) + "\n"


def parse_lock(text: str, path: Path = Path("engine.lock")) -> Lock:
    """The Lock of the text of a lock file (ValueError when it is not one)."""
    lines = text.splitlines()
    entries: list[Entry] = []
    header: list[str] = []
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
        header.append(lines[i])
        i += 1
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            i += 1
            continue
        match = _ENTRY.fullmatch(line)
        if line[:1].isspace() or not match:
            raise ValueError(f"{path}:{i + 1}: not a locked requirement: {line.strip()}")
        requirement = [line.rstrip()]
        while requirement[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            requirement.append(lines[i].rstrip())
        i += 1
        via: list[str] = []
        while i < len(lines) and lines[i].lstrip().startswith("#") and lines[i][:1].isspace():
            comment = lines[i].strip().lstrip("#").strip()
            if comment.startswith("via"):
                comment = comment[3:].strip()
            if comment:
                via.append(comment if comment.startswith("-r") else normalize(comment))
            i += 1
        hashes = tuple(re.findall(r"--hash=(\w+:[0-9a-fA-F]+)", "\n".join(requirement)))
        entries.append(Entry(normalize(match.group(1)), match.group(2), match.group(3) or "",
                             hashes, tuple(via), "\n".join(requirement).rstrip(" \\")))
    torch = TORCH_LINE.search("\n".join(header))
    if torch is None:
        raise ValueError(f"{path}: no '# torch==VERSION' line in its header")
    return Lock(path, "\n".join(header), torch.group(1), entries)


def read_lock(path: Optional[Path] = None) -> Lock:
    """The lock at ``path`` (default: LOCK_FILE, the plugin's qgis_plugin/engine.lock)."""
    path = Path(LOCK_FILE if path is None else path)
    return parse_lock(path.read_text(encoding="utf-8"), path)


# --- markers (PEP 508), as the lock writes them ----------------------------------------------
_PLATFORMS = (  # (platform tag prefix, sys_platform, platform_system, os_name)
    ("win", "win32", "Windows", "nt"),
    ("macosx", "darwin", "Darwin", "posix"),
    ("manylinux", "linux", "Linux", "posix"),
    ("musllinux", "linux", "Linux", "posix"),
    ("linux", "linux", "Linux", "posix"),
)
_MACHINES = {"amd64": "AMD64", "win32": "x86", "arm64": "ARM64"}   # Windows tags -> machine


def target_environment(python_version: Optional[str] = None,
                       platform_tag: Optional[str] = None) -> dict[str, str]:
    """The marker environment of this Python, or of another computer: ``python_version``
    as pip's ``--python-version`` takes it (``3.12``, ``312``) and ``platform_tag`` as its
    ``--platform`` (``win_amd64``, ``macosx_14_0_arm64``, ``manylinux_2_28_x86_64``)."""
    env = {"python_version": "%d.%d" % sys.version_info[:2],
           "python_full_version": _platform.python_version(),
           "sys_platform": sys.platform, "platform_system": _platform.system(),
           "platform_machine": _platform.machine(), "os_name": "nt" if sys.platform == "win32"
           else "posix", "implementation_name": sys.implementation.name,
           "platform_python_implementation": _platform.python_implementation()}
    if python_version:
        parts = python_version.split(".") if "." in python_version else \
            [python_version[0], python_version[1:]] if len(python_version) > 1 else [python_version]
        parts = [p for p in parts if p] + ["0"] * (3 - len([p for p in parts if p]))
        env["python_version"] = ".".join(parts[:2])
        env["python_full_version"] = ".".join(parts[:3])
    if platform_tag:
        for prefix, sys_platform, system, os_name in _PLATFORMS:
            if platform_tag.startswith(prefix):
                env.update(sys_platform=sys_platform, platform_system=system, os_name=os_name)
                break
        else:
            raise ValueError(f"unknown platform tag {platform_tag!r}")
        machine = platform_tag.split("_")[-1] if "_" in platform_tag else platform_tag
        if platform_tag.endswith("x86_64"):
            machine = "x86_64"
        if env["sys_platform"] == "win32":
            machine = _MACHINES.get(machine, machine)
        env["platform_machine"] = machine
    return env


def marker_matches(marker: str, environment: Mapping[str, str]) -> bool:
    """Whether the PEP 508 ``marker`` holds in ``environment`` (:func:`target_environment`),
    as pip reads it: packaging's markers, or pip's own copy of packaging where the package
    itself is absent (an engine, Debian's Python without python3-packaging)."""
    try:
        from packaging.markers import Marker
    except ImportError:
        from pip._vendor.packaging.markers import Marker
    return Marker(marker).evaluate(dict(environment))


# --- an engine against its lock ---------------------------------------------------------------
def installed_versions() -> dict[str, str]:
    """{normalized name: version} of the distributions this Python sees."""
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist.version)
    return found


def differences(lock: Lock, installed: Mapping[str, str],
                environment: Optional[Mapping[str, str]] = None) -> list[dict]:
    """Where ``installed`` ({name: version}) differs from the lock's entries that apply in
    ``environment`` (default: this Python) and from its torch: ``{"name", "installed",
    "locked"}`` each, ``installed`` None when missing. Optional tools (uv) count only when
    installed; torch's local label (``+cpu``, ``+cu126``) is not a difference."""
    env = target_environment() if environment is None else environment
    found = {normalize(k): v for k, v in installed.items()}
    out = []
    for entry in lock.applicable(env):
        have = found.get(entry.name)
        if have is None and entry.name in OPTIONAL:
            continue
        if have != entry.version:
            out.append({"name": entry.name, "installed": have, "locked": entry.version})
    torch = found.get("torch")
    if torch is None or torch.split("+")[0] != lock.torch:
        out.append({"name": "torch", "installed": torch, "locked": lock.torch})
    return out
