"""The engine of the QGIS plugin: its setup (qgis_plugin/engine_plan.py, engine_installer.py)
and how the provider finds and runs it (engine_lookup.py): per-user folders, the isolated
environment, the lookup order, the version check, the install lock, real setup runs (venv,
Cancel, a pip failure classified), ``ces doctor --json``, and ``canExecute`` without an
engine. The full online/offline build of an engine is in test_qgis_engine_build.py (slow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("qgis.core")

from crossearth_sar.qgis_plugin import engine_installer, engine_lookup, engine_plan  # noqa: E402
from crossearth_sar.version import __version__  # noqa: E402

from _helpers_qgis import (  # noqa: E402
    DEMO_SCENE,
    ces_setting,
    recording_feedback,
    venv_ces,
)

pytestmark = pytest.mark.qgis


# --- where ---------------------------------------------------------------------------------
def test_engine_folders_per_platform_and_override():
    home = {"HOME": "/home/ana"}
    assert engine_lookup.engines_root(env={**home, "LOCALAPPDATA": r"C:\Users\ana\AppData\Local"},
                                      platform="win32") == Path(r"C:\Users\ana\AppData\Local") / "CrossEarth-SAR" / "engines"
    assert engine_lookup.engines_root(env=home, platform="darwin") == \
        Path("/home/ana/Library/Application Support/CrossEarth-SAR/engines")
    assert engine_lookup.engines_root(env=home, platform="linux") == Path("/home/ana/.local/share/CrossEarth-SAR/engines")
    assert engine_lookup.engines_root(env={**home, "XDG_DATA_HOME": "/data"}, platform="linux") == \
        Path("/data/CrossEarth-SAR/engines")
    assert engine_lookup.engines_root(env={**home, "CES_ENGINE_HOME": "/opt/ces"}, platform="linux") == Path("/opt/ces")
    assert engine_lookup.engines_root("/mine", env={**home, "CES_ENGINE_HOME": "/opt/ces"}) == Path("/mine")
    # never inside the plugin folder, whatever the platform
    for platform in ("win32", "darwin", "linux"):
        root = engine_lookup.engines_root(env={**home, "LOCALAPPDATA": "/home/ana/AppData/Local"},
                                          platform=platform)
        assert engine_installer.PLUGIN_FOLDER not in root.parents


def test_install_commands_online_and_offline(tmp_path):
    build, source = tmp_path / ".build-x", tmp_path / "src"
    lock = engine_plan.read_lock()
    online = engine_plan.install_steps("/usr/bin/python3", build, "cu126", source, platform="linux")
    python = str(build / "venv" / "bin" / "python")
    assert online[0].command == ["/usr/bin/python3", "-I", "-m", "venv", str(build / "venv")]
    for step in online[1:]:
        assert step.command[:2] == [python, "-I"]
    for step, subset in zip(online[1:3], (engine_plan.LOCKED_TOOLS, engine_plan.LOCKED_PACKAGES)):
        assert {"--require-hashes", "--no-deps"} <= set(step.command)   # the lock, hash-checked
        assert step.command[-2:] == ["-r", str(build / subset)]
    torch_step = online[3].command
    assert torch_step[torch_step.index("--index-url") + 1] == "https://download.pytorch.org/whl/cu126"
    assert torch_step[-1] == f"torch=={lock.torch}"   # the lock's version
    package = online[4].command
    assert package[-1] == str(source) and "--no-index" not in package and "--no-deps" in package
    assert online[-1].command[-4:] == ["doctor", "--json", "--device", "auto"]   # cu126
    offline = engine_plan.install_steps("/usr/bin/python3", build, "cpu", source, wheels=tmp_path / "w")
    for step in offline[1:5]:
        assert step.command[step.command.index("--find-links") + 1] == str(tmp_path / "w")
        assert "--no-index" in step.command and "--index-url" not in step.command
    windows = engine_plan.install_steps("py.exe", build, "cpu", source, platform="win32")
    assert windows[1].command[0] == str(build / "venv" / "Scripts" / "python.exe")


def test_a_setup_installs_the_lock_subsets_with_their_hashes(tmp_path):
    build, wheels = tmp_path / ".build-x", tmp_path / "w"
    wheels.mkdir()
    lock = engine_plan.read_lock()
    files = engine_plan.lock_requirements(build, wheels)
    tools, packages = files[build / engine_plan.LOCKED_TOOLS], files[build / engine_plan.LOCKED_PACKAGES]
    named = lambda text: {line.split("==")[0] for line in text.splitlines() if "==" in line and not line.startswith("#")}  # noqa: E731
    assert named(tools) == {"pip", "setuptools", "wheel"}   # no uv: the folder holds none
    assert named(packages) == lock.names() - {"pip", "setuptools", "wheel", "uv"}
    assert packages.count("--hash=sha256:") == sum(len(e.hashes) for e in lock.entries
                                                   if e.name not in ("pip", "setuptools", "wheel", "uv"))
    assert "python_full_version" in packages   # markers kept: the engine's Python evaluates them
    (wheels / "uv-0.13.9-py3-none-manylinux_2_17_x86_64.whl").write_bytes(b"")
    assert named(engine_plan.lock_requirements(build, wheels)[build / engine_plan.LOCKED_TOOLS]) == \
        {"pip", "setuptools", "wheel", "uv"}


def test_offline_install_uses_uv_only_when_the_wheel_folder_holds_it(tmp_path):
    build, source, wheels = tmp_path / ".build-x", tmp_path / "src", tmp_path / "w"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    python = str(build / "venv" / "bin" / "python")
    without = engine_plan.install_steps("/usr/bin/python3", build, "cpu", source, wheels=wheels)
    assert [s.command[:4] for s in without[1:5]] == [[python, "-I", "-m", "pip"]] * 4
    (wheels / "uv-0.13.9-py3-none-manylinux_2_17_x86_64.whl").write_bytes(b"")
    steps = engine_plan.install_steps("/usr/bin/python3", build, "cpu", source, wheels=wheels)
    assert steps[1].command[:4] == [python, "-I", "-m", "pip"]   # installs uv (locked-tools.txt)
    uv = [str(build / "venv" / "bin" / "uv"), "--no-config", "--cache-dir",
          str(build / engine_plan.UV_CACHE), "pip", "install", "--python", python]
    for step in steps[2:5]:
        assert step.command[:len(uv)] == uv
        assert step.command[step.command.index("--find-links") + 1] == str(wheels)
        assert "--no-index" in step.command
    windows = engine_plan.install_steps("py.exe", build, "cpu", source, wheels=wheels, platform="win32")
    assert windows[2].command[0] == str(build / "venv" / "Scripts" / "uv.exe")
    # online, pip always (it reads the user's pip configuration; uv does not)
    online = engine_plan.install_steps("/usr/bin/python3", build, "cpu", source)
    assert all(s.command[1:4] == ["-I", "-m", "pip"] for s in online[1:5])


def test_the_wheel_folder_script_downloads_the_lock_of_its_target():
    import importlib

    from _helpers_qgis import REPO

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        engine_wheels = importlib.import_module("engine_wheels")
    finally:
        sys.path.remove(str(REPO / "scripts"))
    lock = engine_plan.read_lock()
    required = engine_wheels.install_requires()
    assert any(r.startswith("torch") for r in required)
    args, pip_options = engine_wheels.parse(["w", "--python-version", "3.12", "--platform",
                                             "win_amd64", "--backend", "cuda", "-q"])
    assert (args.python_version, args.platform, args.backend, pip_options) == \
        ("3.12", ["win_amd64"], "cuda", ["-q"])
    env = engine_wheels.plugin_module("engine_lock").target_environment("3.12", "win_amd64")
    text = lock.requirements(environment=env)   # what it downloads: markers evaluated for the target
    names = {line.split("==")[0] for line in text.splitlines() if "==" in line and not line.startswith("#")}
    assert " ; " not in text and "numpy==" in text and "colorama==" in text   # Windows only
    assert {"pip", "setuptools", "wheel", "uv"} <= names
    assert {r.split(">")[0].split("=")[0].strip() for r in required if not r.startswith("torch")} <= names


def _nvidia_smi(folder: Path, script: str) -> Path:
    """A real `nvidia-smi` program in ``folder`` (the input of the detection)."""
    folder.mkdir(exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script + "\n")
    smi.chmod(0o755)
    return smi


GPU_LISTED = "[ \"$1\" = -L ] && echo 'GPU 0: NVIDIA H200 (UUID: GPU-1)' && exit 0; exit 4"
NO_DRIVER = "echo 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2; exit 9"
NO_DEVICE = "echo 'No devices were found'; exit 6"


def test_backend_follows_nvidia_smi_on_path_and_the_user_override(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    _nvidia_smi(bin_dir, GPU_LISTED)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert engine_plan.detect_backend() == engine_plan.choose_backend() == engine_plan.CUDA_BACKEND
    assert engine_plan.choose_backend("cpu") == "cpu"                 # the override, GPU or not
    for script in (NO_DRIVER, NO_DEVICE):
        _nvidia_smi(bin_dir, script)
        assert engine_plan.detect_backend() == engine_plan.choose_backend("auto") == "cpu"
        assert engine_plan.choose_backend("cuda") == engine_plan.CUDA_BACKEND  # the override, GPU or not
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))      # no nvidia-smi at all
    assert engine_plan.choose_backend() == "cpu"
    with pytest.raises(ValueError):
        engine_plan.choose_backend("rocm")


def test_a_cuda_engine_installs_cuda_torch_and_checks_on_the_gpu(tmp_path):
    build, source = tmp_path / ".build-x", tmp_path / "src"
    cuda = engine_plan.install_steps("/usr/bin/python3", build, engine_plan.CUDA_BACKEND, source)
    torch_step = cuda[3].command
    assert torch_step[torch_step.index("--index-url") + 1] == \
        f"https://download.pytorch.org/whl/{engine_plan.CUDA_BACKEND}"
    assert cuda[-1].command[-2:] == ["--device", "auto"]   # the GPU when torch can use it
    cpu = engine_plan.install_steps("/usr/bin/python3", build, "cpu", source)
    assert cpu[-1].command[-2:] == ["--device", "cpu"]
    report = {"version": __version__, "python": "3.11", "torch": "2.13.0+cu126", "gdal": "3.9",
              "cuda": {"available": False, "device": None}, "model": {"segments": True}}
    assert "finds no usable GPU" in engine_installer.doctor_summary(report, engine_plan.CUDA_BACKEND)
    assert "from PyPI" in engine_installer.doctor_summary(report, "cpu")   # PyTorch's CPU index unreachable
    assert "CPU (no CUDA)" in engine_installer.doctor_summary({**report, "torch": "2.13.0+cpu"}, "cpu")
    report["cuda"] = {"available": True, "device": "NVIDIA H200"}
    assert "GPU: NVIDIA H200" in engine_installer.doctor_summary(report, engine_plan.CUDA_BACKEND)


def test_setup_algorithm_picks_the_backend_from_nvidia_smi_unless_told(ces_provider, tmp_path, monkeypatch):
    """The real algorithm: its backend shows in the engine folder's name (here in the log of
    a setup stopped at once, as no Python is found)."""
    import processing
    from qgis.core import QgsProcessingException

    bin_dir = tmp_path / "bin"
    _nvidia_smi(bin_dir, GPU_LISTED)
    monkeypatch.setenv("PATH", str(bin_dir))          # a GPU, and no Python to build with
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "no-uv-pythons"))
    monkeypatch.delenv("CES_ENGINE_PYTHON", raising=False)
    root = tmp_path / "engines"
    for choice, gpu, backend in ((0, True, engine_plan.CUDA_BACKEND), (1, True, "cpu"),
                                 (0, False, "cpu"), (2, False, engine_plan.CUDA_BACKEND)):
        if not gpu:
            _nvidia_smi(bin_dir, NO_DRIVER)
        feedback = recording_feedback()
        with pytest.raises(QgsProcessingException, match="No Python 3.10"):
            processing.run("crossearth_sar:setup_engine", {"BACKEND": choice, "FOLDER": str(root)},
                           feedback=feedback)
        assert (root / f"{engine_lookup.engine_name(__version__, backend)}-install-failed.log").is_file()
        assert any(f"({backend})" in line for line in feedback.infos), feedback.infos
        for log in root.glob("*-install-failed.log"):
            log.unlink()


def test_base_python_never_a_bundled_one(tmp_path):
    assert engine_plan.is_bundled_python("/Applications/QGIS.app/Contents/MacOS/bin/python3", "darwin")
    assert engine_plan.is_bundled_python(r"C:\OSGeo4W\apps\Python312\python.exe", "win32",
                                         host_python=r"C:\OSGeo4W\apps\Python312\python.exe")
    assert engine_plan.is_bundled_python(r"C:\Program Files\QGIS 3.22\apps\Python39\python.exe", "win32",
                                         host_python=r"C:\x\python.exe")
    assert not engine_plan.is_bundled_python("/usr/bin/python3", "linux")
    python, version = engine_plan.find_base_python([str(tmp_path / "missing"), "/usr/bin/python3"])
    assert python == "/usr/bin/python3" and version >= (3, 10)
    old = tmp_path / "python3"
    old.write_text("#!/bin/sh\necho 3.8\n")
    old.chmod(0o755)
    with pytest.raises(engine_plan.EngineError) as err:
        engine_plan.find_base_python([str(old)])
    assert err.value.kind == "no_python" and "(3.8)" in str(err.value) and "python3-venv" in str(err.value)


def test_a_python_installed_by_uv_builds_the_engine(tmp_path):
    """`uv python install 3.12` puts Pythons in $UV_PYTHON_INSTALL_DIR (default: the data
    folder's uv/python). uv cannot download one here (github.com is not reachable), so a link
    to this machine's Python stands in uv's layout: the program found there is what is tested."""
    uv_home = tmp_path / "data" / "uv" / "python"
    python = uv_home / "cpython-3.12.16-linux-x86_64-gnu" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.symlink_to(os.path.realpath("/usr/bin/python3"))
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "PATH": str(tmp_path / "empty")}
    assert engine_plan.python_candidates(env, "linux") == [str(python)]
    moved = {**env, "XDG_DATA_HOME": str(tmp_path / "elsewhere"), "UV_PYTHON_INSTALL_DIR": str(uv_home)}
    assert engine_plan.python_candidates(moved, "linux") == [str(python)]
    found, version = engine_plan.find_base_python(engine_plan.python_candidates(env, "linux"), "linux")
    assert found == str(python) and version >= engine_plan.MIN_PYTHON


@pytest.mark.parametrize("kind,output", [
    ("no_network", "WARNING: Retrying ... Failed to establish a new connection: [Errno -3] "
                   "Temporary failure in name resolution"),
    ("proxy", "ProxyError('Cannot connect to proxy.', OSError('Tunnel connection failed: 407 "
              "Proxy Authentication Required'))"),
    ("disk_space", "ERROR: Could not install packages due to an OSError: [Errno 28] No space "
                   "left on device"),
    ("no_wheel", "ERROR: Could not find a version that satisfies the requirement torch>=2.1 "
                 "(from versions: none)\nERROR: No matching distribution found for torch>=2.1"),
    ("ssl", "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]"),
    ("permission", "ERROR: [Errno 13] Permission denied: '/opt/engines/x'"),
])
def test_failures_are_classified_with_their_fix(kind, output):
    error = engine_installer.classify_failure(output, backend="cpu")
    assert error.kind == kind
    assert len(str(error)) > 60   # says what to do, not only what happened


# --- the environment ---------------------------------------------------------------------------
def test_engine_environment_keeps_qgis_out(tmp_path):
    polluted = {"PATH": f"/usr/lib/qgis/bin{os.pathsep}/usr/bin", "HOME": "/home/ana",
                "PYTHONPATH": "/usr/share/qgis/python", "PYTHONHOME": "/usr",
                "PROJ_LIB": "/qgis/proj", "PROJ_DATA": "/qgis/proj", "GDAL_DATA": "/qgis/gdal",
                "LD_LIBRARY_PATH": "/usr/lib/qgis", "QGIS_PREFIX_PATH": "/usr/lib/qgis",
                "QGIS_CUSTOM_CONFIG_PATH": "/p", "QT_PLUGIN_PATH": "/q", "LANG": "C.UTF-8"}
    env = engine_lookup.engine_environment(polluted)
    for name in ("PYTHONPATH", "PYTHONHOME", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA",
                 "LD_LIBRARY_PATH", "QGIS_PREFIX_PATH", "QGIS_CUSTOM_CONFIG_PATH", "QT_PLUGIN_PATH"):
        assert name not in env, name
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/ana" and env["LANG"] == "C.UTF-8"
    osgeo = engine_lookup.engine_environment({"PATH": os.pathsep.join(["/osgeo4w/bin", "/usr/bin"]),
                                              "OSGEO4W_ROOT": "/osgeo4w"})
    assert osgeo["PATH"] == "/usr/bin" and "OSGEO4W_ROOT" not in osgeo


def _broken_numpy(folder: Path) -> Path:
    """A folder whose `numpy` fails on import: on PYTHONPATH it would break any ces run."""
    (folder / "numpy").mkdir(parents=True)
    (folder / "numpy" / "__init__.py").write_text("raise ImportError('QGIS numpy leaked in')\n")
    return folder


def test_ces_runs_isolated_from_qgis_environment(with_venv_python, tmp_path, monkeypatch):
    """QGIS's PYTHONPATH (here: one with a broken numpy), PROJ and GDAL data never reach ces."""
    import processing

    monkeypatch.setenv("PYTHONPATH", str(_broken_numpy(tmp_path / "qgis_python")))
    monkeypatch.setenv("PROJ_LIB", str(tmp_path / "nowhere"))
    monkeypatch.setenv("GDAL_DATA", str(tmp_path / "nowhere"))
    out = tmp_path / "d.tif"
    result = processing.run("crossearth_sar:descriptors",
                            {"INPUT": str(DEMO_SCENE), "OUTPUT": str(out)})
    assert Path(result["OUTPUT"]).is_file()


@pytest.fixture
def with_venv_python(ces_provider):
    with ces_setting(sys.executable):
        yield sys.executable


# --- lookup order -------------------------------------------------------------------------------
def _fake_engine(root: Path, version: str = __version__, backend: str = "cpu") -> Path:
    """An engine folder whose venv Python is this test environment's (a real, working engine)."""
    folder = root / engine_lookup.engine_name(version, backend)
    python = engine_lookup.venv_python(folder / "venv")
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (folder / "engine.json").write_text(json.dumps({"version": version, "backend": backend}))
    return python


def test_lookup_order_setting_then_engine_then_path_then_other_engines(ces_provider, tmp_path, monkeypatch):
    from crossearth_sar.qgis_plugin.ces_process import CLI_MODULE, resolve_ces

    root = tmp_path / "engines"
    monkeypatch.setenv("CES_ENGINE_HOME", str(root))
    monkeypatch.delenv("CES_EXECUTABLE", raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = bin_dir / "ces"
    on_path.write_text("#!/bin/sh\nexit 0\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    old_python = _fake_engine(root, "0.0.1")                             # 4. another version,
    assert (resolve_ces("").program, resolve_ces("").version) == (str(old_python), "0.0.1")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert resolve_ces("").program == str(on_path)                       # 3. after PATH
    engine_python = _fake_engine(root)
    ces = resolve_ces("")                                                # 2. the managed engine
    assert ces.program == str(engine_python) and ces.prefix == ["-I", "-m", CLI_MODULE]
    assert ces.version == __version__
    assert resolve_ces(venv_ces()).program == venv_ces()                 # 1. the setting


def test_a_cuda_engine_is_used_before_a_cpu_one(tmp_path):
    _fake_engine(tmp_path, backend="cpu")
    assert engine_lookup.managed_engine(root=tmp_path).backend == "cpu"
    _fake_engine(tmp_path, backend=engine_plan.CUDA_BACKEND)
    assert engine_lookup.managed_engine(root=tmp_path).backend == engine_plan.CUDA_BACKEND
    assert engine_lookup.managed_engine("0.0.1", root=tmp_path) is None   # another version: not this one


def test_segment_runs_through_the_managed_engine(ces_provider, tmp_path, monkeypatch):
    import processing

    root = tmp_path / "engines"
    monkeypatch.setenv("CES_ENGINE_HOME", str(root))
    monkeypatch.delenv("CES_EXECUTABLE", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    python = _fake_engine(root)
    feedback = recording_feedback()
    with ces_setting(""):
        result = processing.run("crossearth_sar:descriptors", {
            "INPUT": str(DEMO_SCENE), "OUTPUT": str(tmp_path / "d.tif")}, feedback=feedback)
    assert Path(result["OUTPUT"]).is_file()
    assert any(c.startswith(f"{python} -I -m crossearth_sar") for c in feedback.commands)
    assert feedback.warnings == []   # same version: no advice


def test_version_mismatch_says_what_to_do(ces_provider, tmp_path):
    import processing

    from crossearth_sar.qgis_plugin.ces_process import CesCommand, engine_version

    assert engine_version(CesCommand(venv_ces())) == __version__
    old = tmp_path / "ces"
    old.write_text(f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "ces, version 0.0.1"; exit 0; }}\n'
                   f'exec "{venv_ces()}" "$@"\n')
    old.chmod(0o755)
    feedback = recording_feedback()
    with ces_setting(str(old)):
        processing.run("crossearth_sar:descriptors", {
            "INPUT": str(DEMO_SCENE), "OUTPUT": str(tmp_path / "d.tif")}, feedback=feedback)
    advice = [w for w in feedback.warnings if "0.0.1" in w]
    assert len(advice) == 1 and __version__ in advice[0] and "Set up CrossEarth-SAR engine" in advice[0]


def test_without_an_engine_algorithms_stay_listed_and_say_so(ces_provider, tmp_path, monkeypatch):
    from qgis.core import QgsApplication

    monkeypatch.setenv("CES_ENGINE_HOME", str(tmp_path / "engines"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CES_EXECUTABLE", raising=False)
    with ces_setting(""):
        for name in ("segment", "descriptors", "finetune", "evaluate"):
            alg = QgsApplication.processingRegistry().algorithmById(f"crossearth_sar:{name}")
            ok, message = alg.canExecute()
            assert not ok and "Set up CrossEarth-SAR engine" in message, name
        setup = QgsApplication.processingRegistry().algorithmById("crossearth_sar:setup_engine")
        assert setup.canExecute() == (True, "")


# --- setup runs --------------------------------------------------------------------------------
def test_lock_is_exclusive_and_a_stale_one_is_taken_over(tmp_path):
    with engine_installer.InstallLock(tmp_path):
        with pytest.raises(engine_plan.EngineError) as err:
            engine_installer.InstallLock(tmp_path).acquire()
        assert err.value.kind == "locked" and str(os.getpid()) in str(err.value)
    assert not (tmp_path / engine_installer.LOCK_NAME).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / engine_installer.LOCK_NAME).write_text(str(dead.pid))
    with engine_installer.InstallLock(tmp_path) as lock:
        assert lock.held


def test_setup_builds_in_a_temporary_folder_and_renames_it(tmp_path):
    root = tmp_path / "engines"
    folder = root / engine_lookup.engine_name(__version__, "cpu")
    venv = folder / "venv"   # steps are given the build folder's venv below
    percents, lines = [], []

    def steps_for(build: Path):
        return [engine_plan.Step("venv", 1.0, ["/usr/bin/python3", "-I", "-m", "venv", "--without-pip",
                                               str(build / "venv")]),
                engine_plan.Step("check", 1.0, [str(engine_lookup.venv_python(build / "venv")), "-I", "-c",
                                                "import json, sys; print(json.dumps({'ok': True, "
                                                "'prefix': sys.prefix}))"])]

    installer = engine_installer.EngineInstaller(root=root, backend="cpu", plan=steps_for,
                                                 progress=lambda p, t: percents.append(p), log=lines.append)
    engine = installer.run()
    assert engine.folder == folder and engine.python.is_file() and venv.is_dir()
    assert engine.info["version"] == __version__ and engine.info["doctor"]["ok"] is True
    assert engine.info["doctor"]["prefix"] == str(venv)   # the check's paths: the final folder
    assert (folder / "install.log").read_text().count("$ ") == 2
    assert percents[0] == 0.0 and percents[-1] == 100.0
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []   # no build, no lock
    # the venv never sees QGIS's (or any system) site-packages
    probe = subprocess.run([str(engine.python), "-I", "-c", "import qgis"], capture_output=True)
    assert probe.returncode != 0
    assert engine_lookup.managed_engine(root=root).folder == folder
    # the venv's scripts name the final folder, not the build folder
    assert str(folder) in (venv / "bin" / "activate").read_text()
    for path in [venv / "pyvenv.cfg", *(venv / "bin").iterdir()]:
        if path.is_file() and not path.is_symlink():
            assert ".build-" not in path.read_text(errors="replace"), path


def test_cancel_stops_the_setup_and_leaves_nothing(tmp_path):
    root = tmp_path / "engines"
    started = {}

    def canceled() -> bool:
        return "t" in started and time.monotonic() - started["t"] > 0.5

    steps = [engine_plan.Step("sleep", 1.0, [sys.executable, "-c",
                                             "import time; print('working', flush=True); time.sleep(60)"])]
    installer = engine_installer.EngineInstaller(root=root, plan=lambda build: steps, canceled=canceled,
                                                 progress=lambda p, t: started.setdefault("t", time.monotonic()))
    t0 = time.monotonic()
    with pytest.raises(engine_plan.EngineError) as err:
        installer.run()
    assert err.value.kind == "canceled" and time.monotonic() - t0 < 10
    assert sorted(p.name for p in root.iterdir()) == [f"{installer.folder.name}-install-failed.log"]
    assert "working" in (root / f"{installer.folder.name}-install-failed.log").read_text()


def test_a_failed_pip_install_is_classified(tmp_path):
    """Offline, from a wheel folder that lacks the package: real pip, classified message."""
    root, wheels = tmp_path / "engines", tmp_path / "wheels"
    wheels.mkdir()
    steps = [engine_plan.Step("pip", 1.0, [sys.executable, "-m", "pip", "install", "--no-index",
                                           "--find-links", str(wheels), "--target", str(tmp_path / "t"),
                                           "crossearth-sar-not-there"])]
    with pytest.raises(engine_plan.EngineError) as err:
        engine_installer.EngineInstaller(root=root, wheels=wheels, plan=lambda build: steps).run()
    assert err.value.kind == "no_wheel" and str(wheels) in str(err.value)
    assert not engine_lookup.installed_engines(root)


def test_ces_doctor_json_reports_versions_and_a_working_model(capsys):
    from crossearth_sar.crossearth_cli.main import main

    assert main(["doctor", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    import rasterio
    import torch

    assert report["ok"] is True and report["problems"] == []
    assert report["version"] == __version__
    assert report["torch"] == torch.__version__ and report["gdal"] == rasterio.__gdal_version__
    assert report["cuda"]["available"] == torch.cuda.is_available()
    assert report["model"]["loads"] and report["model"]["segments"] and report["model"]["classes"]
    assert "test tile" in engine_installer.doctor_summary(report)
