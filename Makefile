# vsda_ros developer entry points. The two that matter: `make demo` and `make test`.
#
# The venv lives in a cache outside the clone, keyed by the hash of requirements.lock, and
# `.venv` is a symlink to it: a fresh clone reuses an existing venv in seconds, and a changed
# lock builds a new one. `.venv/bin/python` is always the project's interpreter.

SHELL := /bin/bash
PYTHON ?= python3
LOCK := requirements.lock
LOCK_HASH := $(shell sha256sum $(LOCK) | cut -c1-16)
VSDA_VENV_CACHE ?= $(HOME)/.cache/vsda_ros/venvs
VENV_DIR := $(VSDA_VENV_CACHE)/$(LOCK_HASH)
VENV := .venv
PY := $(VENV)/bin/python

# ---- Network rule: every ROS process started from here stays on loopback. ----------------
# DDS discovers over multicast on every interface by default; the older localhost-only switch is ignored on
# Kilted. Every process that make starts inherits these; the test suite additionally picks a
# ROS_DOMAIN_ID of its own per run (test/conftest.py), and so do the tools that start nodes.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= $(shell echo $$(( ($$$$ % 100) + 100 )))
export VSDA_DATA_DIR ?= $(abspath ../shared/data)
# Two CPU threads for torch by default (the CI and dev machines have 2 cores).
export OMP_NUM_THREADS ?= 2
# Fast DDS: 64 MB shared-memory segment (4K frames arrive) (images stay out of fragmented UDP), UDP on 127.0.0.1.
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(abspath config/fastdds_profile.xml)

DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast lint bench accuracy models clean help ros2-tools

help:
	@echo "make demo      set up the venv, run segmentation_node on the real CamVid clip over ROS 2, print where the results are"
	@echo "make test      set up the venv, run make lint, then the whole test suite (what CI runs)"
	@echo "make test-fast the unit tests: no DDS, no real-data runs, nothing marked slow (< 2 min)"
	@echo "make lint      ruff check, ruff format --check and mypy"
	@echo "make venv      create or refresh the venv ($(VENV) -> $(VENV_DIR))"
	@echo "make ros2-tools  build ros2 launch/param/topic + colcon from ../shared/ros2-src (for make test)"
	@echo "make accuracy  mIoU of the published models on the real CamVid val clip"
	@echo "make models    retrain every checkpoint shipped in vsda_ros/zoo/ (~1-2 h on 2 CPU threads)"
	@echo "make clean     remove outputs (the cached venv is kept)"

# The venv: built once per lock hash (a .complete marker guards half-built venvs), then the
# package is (re)installed in editable mode so `vsda` and `segmentation_node` point at this clone.
# No file prerequisite on purpose: the lock's *hash* is in the path, and a fresh clone's newer
# mtime must not trigger a rebuild.
$(VENV_DIR)/.complete:
	@echo ">> building venv $(VENV_DIR) from $(LOCK) (first time only; ~2 minutes, ~6 GB)"
	rm -rf $(VENV_DIR)
	mkdir -p $(VSDA_VENV_CACHE)
	$(PYTHON) -m venv $(VENV_DIR)
	$(VENV_DIR)/bin/pip install --quiet --disable-pip-version-check -r $(LOCK)
	touch $@

venv: $(VENV_DIR)/.complete
	@if [ "$$(readlink $(VENV))" != "$(VENV_DIR)" ]; then rm -rf $(VENV) && ln -s $(VENV_DIR) $(VENV); fi
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null
	@echo ">> venv ready: $(VENV) -> $(VENV_DIR)"

# The demo: segmentation_node started as a process, the real CamVid clip (61 frames, 15 Hz)
# published to it over ROS 2 (loopback), and what it publishes recorded: colour masks, overlays,
# label masks, its diagnostics, and the mIoU of its masks against the real labels (Cityscapes
# ESPNetv2 mapped to CamVid-11). It prints where everything is.
demo: venv
	@test -d $(VSDA_DATA_DIR)/camvid/val || { echo "no real data at VSDA_DATA_DIR=$(VSDA_DATA_DIR) (expected ../shared/data)"; exit 2; }
	$(VENV)/bin/vsda demo --out $(DEMO_OUT)

# The quality gate, run first by `make test`: lint rules and the format (ruff.toml), types
# (mypy.ini: the whole package, the core strictly). Tool versions: requirements.lock.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venv lint ros2-tools
	$(PY) -m pytest $(PYTEST_ARGS)

# Everyday work: the tests that need neither DDS (`ros`) nor the real data (`data`) nor long
# runs (`slow`); test/conftest.py sets the first two markers from what a test uses.
test-fast: venv
	$(PY) -m pytest -m "not ros and not data and not slow" $(PYTEST_ARGS)

# Real ROS 2 tools (ros2 launch/param/topic, colcon) for test/test_ros2_tools.py, built from the
# pinned sources in ../shared/ros2-src on a hard-linked copy of the venv (~5 min, once per lock +
# build script + archives); skipped, and those tests with it, when the sources are absent.
ROS2_SRC ?= $(abspath ../shared/ros2-src)
ROS2_TOOLS_HASH := $(shell { cat $(LOCK) tools/build_ros2_tools.sh; ls $(ROS2_SRC) 2>/dev/null | grep 'tar.gz$$'; } | sha256sum | cut -c1-16)
VSDA_ROS2_TOOLS_CACHE ?= $(HOME)/.cache/vsda_ros/ros2-tools
export VSDA_ROS2_TOOLS ?= $(VSDA_ROS2_TOOLS_CACHE)/$(ROS2_TOOLS_HASH)

ros2-tools: venv
	@bash tools/build_ros2_tools.sh $(VENV_DIR) $(VSDA_ROS2_TOOLS) $(ROS2_SRC)

accuracy: venv
	$(VENV)/bin/vsda segment --model espnet-camvid --input $(VSDA_DATA_DIR)/camvid/val --labels $(VSDA_DATA_DIR)/camvid/valannot --out out/acc_espnet_camvid --json out/acc_espnet_camvid.json --no-overlay
	$(VENV)/bin/vsda segment --model espnetv2-cityscapes --size 480x360 --map cityscapes-camvid --input $(VSDA_DATA_DIR)/camvid/val --labels $(VSDA_DATA_DIR)/camvid/valannot --out out/acc_espnetv2_city --json out/acc_espnetv2_city.json --no-overlay

# Retrain every shipped checkpoint (vsda_ros/zoo/) from the real data with fixed seeds (tools/zoo_build.py,
# a repository tool, not installed), compare
# the new files with the shipped ones on CamVid val, install them and update their sha256.
models: venv
	@test -d $(VSDA_DATA_DIR)/camvid/val || { echo "no real data at VSDA_DATA_DIR=$(VSDA_DATA_DIR) (expected ../shared/data)"; exit 2; }
	$(PY) tools/zoo_build.py --install $(MODELS_ARGS)

clean:
	rm -rf $(DEMO_OUT) out build *.egg-info .pytest_cache
