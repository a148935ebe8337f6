"""``ces doctor`` against the engine's lock (qgis_plugin/engine.lock): the packages whose
installed version differs from the locked one, by name with both versions, in the text and
in ``--json``; no difference is no problem (``ok`` stays true). The model check is replaced
by a stub here (it is tested in tests/qgis/test_qgis_engine.py)."""
from __future__ import annotations

import json

import pytest

from crossearth_sar.crossearth_cli import doctor_cmd
from crossearth_sar.crossearth_cli.main import main
from crossearth_sar.qgis_plugin import engine_lock


@pytest.fixture
def engine(monkeypatch):
    """This Python seen as an engine whose packages are exactly the lock's, but numpy."""
    lock = engine_lock.read_lock()
    env = engine_lock.target_environment()
    installed = {e.name: e.version for e in lock.applicable(env)}
    installed["torch"] = f"{lock.torch}+cpu"
    monkeypatch.setattr(engine_lock, "installed_versions", lambda: dict(installed))
    monkeypatch.setattr(doctor_cmd, "_check_model",
                        lambda report, device: report.update(model={"path": "m", "loads": True,
                                                                    "segments": True, "classes": [],
                                                                    "seconds": 0.0}))
    return lock, env, installed


def _doctor(capsys, *args: str) -> tuple[int, str]:
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def test_doctor_says_when_the_packages_match_the_lock(engine, capsys):
    lock, _, _ = engine
    code, out = _doctor(capsys, "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and report["ok"] is True
    assert report["lock"]["matches"] is True and report["lock"]["differences"] == []
    assert report["lock"]["torch"] == lock.torch and report["lock"]["path"] == str(lock.path)
    code, out = _doctor(capsys)
    assert code == 0 and f"packages match {lock.path}" in out


def test_doctor_names_each_package_that_differs_from_the_lock(engine, capsys):
    lock, env, installed = engine
    numpy = next(e.version for e in lock.applicable(env) if e.name == "numpy")
    installed.update(numpy="1.26.4", torch="2.5.1+cpu")
    del installed["pyyaml"]
    code, out = _doctor(capsys, "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and report["ok"] is True and report["problems"] == []   # a warning, no problem
    assert report["lock"]["matches"] is False
    by_name = {d["name"]: d for d in report["lock"]["differences"]}
    assert by_name["numpy"] == {"name": "numpy", "installed": "1.26.4", "locked": numpy}
    assert by_name["pyyaml"]["installed"] is None
    assert by_name["torch"] == {"name": "torch", "installed": "2.5.1+cpu", "locked": lock.torch}
    code, out = _doctor(capsys)
    assert code == 0 and f"3 of {report['lock']['packages']} packages differ from {lock.path}" in out
    assert f"  numpy: 1.26.4 installed, {numpy} locked" in out.splitlines()
    assert any(line.startswith("  pyyaml: not installed, ") for line in out.splitlines())
