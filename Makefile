# The two commands of the README: `make demo` and `make test`. Both bootstrap a fresh
# Debian 12 machine (as root) and are idempotent.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CES := $(VENV)/bin/ces
STAMP := $(VENV)/.installed
APT := DEBIAN_FRONTEND=noninteractive apt-get
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_SCENE := examples/Spain_7370579_S1Hand.tif
WHEELS := .wheels
WHEELS_STAMP := $(WHEELS)/.complete

.PHONY: demo test test-slow venv wheels lock qgis plugin bench clean

venv: $(STAMP)

# Debian's python3 with system site packages, so QGIS's bindings (Debian-only) are visible.
$(STAMP): setup.cfg pyproject.toml requirements/cpu-constraints.txt
	@if ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || ! /usr/bin/python3 -m venv --help >/dev/null 2>&1; then \
	  $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq --no-install-recommends python3-venv; fi
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23" "setuptools>=68" wheel -c requirements/cpu-constraints.txt
	$(PY) -m pip install -q -c requirements/cpu-constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c requirements/cpu-constraints.txt -e '.[test]'
	touch $(STAMP)

# The wheel folder of an offline engine setup (the QGIS test of the setup installs from it,
# with no index): the engine's lock (qgis_plugin/engine.lock, hash-checked) for this Python,
# and PyTorch at the lock's version from the configured index (here: the local CPU wheel).
# Files already in it are kept; .complete is written last.
wheels: $(WHEELS_STAMP)

$(WHEELS_STAMP): $(STAMP) qgis_plugin/engine.lock scripts/engine_wheels.py qgis_plugin/engine_plan.py qgis_plugin/engine_lock.py
	$(PY) scripts/engine_wheels.py $(WHEELS) --torch-index=

# Rewrite the engine's lock from setup.cfg (uv, from PyPI): after a change of install_requires
# or to take newer releases; then `make wheels` and the QGIS engine tests.
lock: $(STAMP)
	$(PY) -m pip install -q uv
	$(PY) scripts/lock_engine.py

# QGIS 3.22 from Debian (and a virtual display for the desktop test), only when missing.
qgis:
	@if ! dpkg -s python3-qgis qgis-providers xvfb xauth >/dev/null 2>&1; then \
	  $(SUDO) $(APT) update -qq && \
	  $(SUDO) $(APT) install -y -qq --no-install-recommends qgis python3-qgis qgis-providers \
	    xvfb xauth; fi

# Segments the Sen1Floods11 chip with the embedded model; prints the water area in km².
demo: $(STAMP)
	$(CES) segment $(DEMO_SCENE) -o demo.gpkg --raster demo_classes.tif --preview demo_preview.png --overwrite --summary

test: qgis $(STAMP) $(WHEELS_STAMP)
	$(PY) -m ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -rs

test-slow: qgis $(STAMP) $(WHEELS_STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -rs -m slow

plugin:
	/usr/bin/python3 scripts/build_plugin.py crossearth_sar.zip

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(WHEELS) *.egg-info build dist crossearth_sar.zip demo.gpkg demo_classes.tif demo_preview.png
