"""The engine's lock (qgis_plugin/engine.lock, qgis_plugin/engine_lock.py): it matches
setup.cfg's install_requires (every requirement present, satisfied by every pinned version,
one entry per package wherever the engine runs, no stale entry), every entry is pinned with
hashes, its markers are read as packaging reads them, the plugin zip ships it, and a file
whose hash is not the lock's makes a setup refuse with one line naming the package. Local
files only: no QGIS, no network (the setup with the lock: test_qgis_engine_build.py)."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from crossearth_sar.qgis_plugin import engine_installer, engine_lock, engine_plan

from _helpers_qgis import REPO

PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx_14_0_arm64")
ENVIRONMENTS = [engine_lock.target_environment(p, t) for p in PYTHONS for t in PLATFORMS]


@pytest.fixture(scope="module")
def lock() -> engine_lock.Lock:
    return engine_lock.read_lock()


def test_the_lock_matches_setup_cfg(lock):
    required = [Requirement(r) for r in engine_lock.install_requires(REPO / "setup.cfg")]
    hint = "setup.cfg and qgis_plugin/engine.lock differ: run `make lock`"
    by_name: dict[str, list[engine_lock.Entry]] = {}
    for entry in lock.entries:
        by_name.setdefault(entry.name, []).append(entry)
    for requirement in required:
        name = engine_lock.normalize(requirement.name)
        if name == "torch":   # locked by version, installed from the PyTorch index
            assert requirement.specifier.contains(Version(lock.torch)), hint
            continue
        assert name in by_name, f"{requirement} is not in the lock; {hint}"
        for entry in by_name[name]:
            assert requirement.specifier.contains(Version(entry.version), prereleases=True), \
                f"{entry.name}=={entry.version} does not satisfy {requirement}; {hint}"
    # the input's entries are exactly setup.cfg's requirements and the packaging tools
    wanted = {engine_lock.normalize(r.name) for r in required} - {"torch"}
    wanted |= {*engine_lock.TOOLS, *engine_lock.OPTIONAL}
    top = {e.name for e in lock.entries if f"-r {engine_lock.INPUT_NAME}" in e.via}
    assert top == wanted, f"stale or missing top-level entries {sorted(top ^ wanted)}; {hint}"
    # no stale entry: each is needed by the input or by a needed one (or by torch)
    needed, grew = set(top) | {"torch"}, True
    while grew:
        grew = False
        for entry in lock.entries:
            if entry.name not in needed and any(v in needed for v in entry.via):
                needed.add(entry.name)
                grew = True
    assert lock.names() <= needed, f"stale entries {sorted(lock.names() - needed)}; {hint}"


def test_every_entry_is_pinned_with_hashes_and_applies_once_everywhere(lock):
    assert lock.entries and "torch" not in lock.names()
    for entry in lock.entries:
        assert Version(entry.version) and entry.hashes, entry
        assert all(h.startswith("sha256:") and len(h) == 7 + 64 for h in entry.hashes), entry
    for env in ENVIRONMENTS:   # one version of every package on each platform and Python
        names = [e.name for e in lock.applicable(env)]
        assert len(names) == len(set(names)), (env, sorted(names))
        assert {"numpy", "rasterio", "geopandas", "scipy", "pip", "uv"} <= set(names), env
    windows = engine_lock.target_environment("3.11", "win_amd64")
    assert "colorama" in {e.name for e in lock.applicable(windows)}


def test_markers_pick_the_version_of_each_target_python_and_platform(lock):
    """A target computer's marker environment (pip download's --python-version/--platform)
    picks the entry pip would pick there: numpy by Python version, colorama on Windows."""
    def numpy(python: str, platform_tag: str) -> str:
        env = engine_lock.target_environment(python, platform_tag)
        return [e.version for e in lock.applicable(env) if e.name == "numpy"][0]

    assert numpy("3.10", "manylinux_2_28_x86_64") == "2.2.6"
    assert numpy("311", "win_amd64") == "2.4.6"
    assert numpy("3.13", "macosx_14_0_arm64") == "2.5.5"
    assert engine_lock.marker_matches("sys_platform == 'win32'",
                                      engine_lock.target_environment("3.12", "win_amd64"))
    assert not engine_lock.marker_matches("python_full_version < '3.11'",
                                          engine_lock.target_environment("3.12"))


def test_target_environment_of_pip_download_options():
    env = engine_lock.target_environment("312", "win_amd64")
    assert (env["python_version"], env["python_full_version"], env["sys_platform"],
            env["platform_system"], env["platform_machine"]) == ("3.12", "3.12.0", "win32", "Windows", "AMD64")
    env = engine_lock.target_environment("3.10", "macosx_14_0_arm64")
    assert (env["sys_platform"], env["platform_machine"], env["os_name"]) == ("darwin", "arm64", "posix")
    env = engine_lock.target_environment(None, "manylinux_2_28_aarch64")
    assert (env["sys_platform"], env["platform_machine"]) == ("linux", "aarch64")
    assert env["python_version"] == "%d.%d" % sys.version_info[:2]
    with pytest.raises(ValueError):
        engine_lock.target_environment("3.12", "solaris_sparc")


def test_differences_name_the_package_and_both_versions(lock):
    env = engine_lock.target_environment("3.11", "manylinux_2_28_x86_64")
    installed = {e.name: e.version for e in lock.applicable(env) if e.name != "uv"}
    installed["torch"] = f"{lock.torch}+cpu"   # the local label is no difference
    assert engine_lock.differences(lock, installed, env) == []
    numpy = next(e for e in lock.applicable(env) if e.name == "numpy")
    installed.update({"numpy": "1.26.4", "uv": "0.0.1", "torch": "2.1.0"})
    del installed["pyyaml"]
    assert engine_lock.differences(lock, installed, env) == [
        {"name": "numpy", "installed": "1.26.4", "locked": numpy.version},
        {"name": "pyyaml", "installed": None, "locked": next(
            e.version for e in lock.entries if e.name == "pyyaml")},
        {"name": "uv", "installed": "0.0.1", "locked": next(
            e.version for e in lock.entries if e.name == "uv")},
        {"name": "torch", "installed": "2.1.0", "locked": lock.torch}]


def test_the_plugin_zip_ships_the_lock():
    spec = importlib.util.spec_from_file_location("build_plugin", REPO / "scripts" / "build_plugin.py")
    build_plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_plugin)
    assert Path("qgis_plugin/engine.lock") in build_plugin.plugin_files(REPO)
    assert "*.lock" in (REPO / "setup.cfg").read_text()   # and the installed package (ces doctor)


def _wheel(folder: Path, name: str = "demo_pkg", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel."""
    files = {f"{name}/__init__.py": b"",
             f"{name}-{version}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()]
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record + [f"{name}-{version}.dist-info/RECORD,,"])
                                                   + "\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, data in files.items():
            zf.writestr(arcname, data)
    return path


def test_a_file_whose_hash_is_not_the_locks_is_refused_naming_the_package(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    digest = hashlib.sha256(_wheel(wheels).read_bytes()).hexdigest()
    changed = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    requirements = tmp_path / "locked.txt"   # many hashes, as numpy has: pip lists them all
    others = "".join(f"    --hash=sha256:{i:064x} \\\n" for i in range(1, 90))
    requirements.write_text(f"demo-pkg==1.0 \\\n{others}    --hash=sha256:{changed}\n")
    pip = [sys.executable, "-m", "pip", "install", "--no-input", "--no-index", "--find-links",
           str(wheels), "--target", str(tmp_path / "t"), "--require-hashes", "--no-deps", "-r",
           str(requirements)]
    steps = [engine_plan.Step("locked", 1.0, pip)]
    with pytest.raises(engine_plan.EngineError) as err:
        engine_installer.EngineInstaller(root=tmp_path / "engines", wheels=wheels,
                                         plan=lambda build: steps).run()
    assert err.value.kind == "hash" and "\n" not in str(err.value)
    assert str(err.value).startswith("demo-pkg==1.0: ") and str(wheels) in str(err.value)
    assert not (tmp_path / "t").exists()   # nothing installed
    # the right hash installs
    requirements.write_text(f"demo-pkg==1.0 \\\n    --hash=sha256:{digest}\n")
    assert subprocess.run(pip, capture_output=True).returncode == 0
    # uv's words for the same
    uv = ("error: Failed to install: demo_pkg-1.0-py3-none-any.whl\n  Caused by: Hash mismatch "
          "for `demo-pkg==1.0`\n\nExpected:\n  sha256:00\n\nComputed:\n  sha256:11\n")
    failure = engine_installer.classify_failure(uv, wheels)
    assert failure.kind == "hash" and str(failure).startswith("demo-pkg==1.0: ")


def test_the_wheel_folder_script_adds_the_older_manylinux_tags():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import engine_wheels
    finally:
        sys.path.remove(str(REPO / "scripts"))
    tags = engine_wheels.platform_tags(["manylinux_2_28_x86_64"])
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags
    assert tags[-1] == "manylinux2014_x86_64" and len(tags) == 13
    assert engine_wheels.platform_tags(["win_amd64", "macosx_14_0_arm64"]) == ["win_amd64", "macosx_14_0_arm64"]
