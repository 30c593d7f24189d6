# depth_fusion_ros -- the user interface. `make demo` runs the whole system, `make test` the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
PKG_STAMP  := $(VENV)/.pkg-installed
# The installed copy of the package (console scripts, share/ data) is refreshed whenever these change.
PKG_SRC := setup.py setup.cfg package.xml $(shell find depth_fusion_ros launch config resource -type f -not -path '*/__pycache__/*' 2>/dev/null)

# ROS 2 environment for tests and demo: ament index in the venv, a throw-away ROS_HOME, an
# isolated DDS domain derived from the shell's PID and discovery kept on this host.
ROS_ENV = AMENT_PREFIX_PATH=$(abspath $(VENV)) ROS_HOME=$$(mktemp -d) \
          ROS_DOMAIN_ID=$$(( $$$$ % 90 + 5 )) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
          RCUTILS_COLORIZED_OUTPUT=0 PYTHONUNBUFFERED=1

.PHONY: setup test demo demo-model bench gpu-check lint clean

setup: $(PKG_STAMP)

$(DEPS_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(PKG_STAMP): $(DEPS_STAMP) $(PKG_SRC)
	$(PY) -m pip install -q --no-deps --no-build-isolation --force-reinstall .
	@rm -rf build *.egg-info
	@touch $@

test: setup
	$(ROS_ENV) $(PY) -m pytest -q test
	$(VENV)/bin/ruff check .

demo: setup
	$(ROS_ENV) $(PY) -m training.demo $(DEMO_ARGS)

# Re-make training/models/demo_model.pt, the model `make demo` ships (55 min of training on
# this 2-core machine with one torch thread, 2026-12-02; its card has the figures).
demo-model: setup
	$(PY) -m training.demo_model $(DEMO_MODEL_ARGS)

bench: setup
	$(ROS_ENV) $(PY) bench/run_all.py $(BENCH_ARGS)

# GPU deployment check on a CUDA machine (< 8 min): torch backend fp32/fp16 and AOTInductor,
# the node over DDS, the TensorRT engine cache; appends to bench/RESULTS.md. No `setup` step: a
# GPU machine may have torch but no package index, so it runs on the venv's Python if there is
# one, else $(PYTHON), and lists the parts it skipped. GPU_CHECK_ARGS=--dry-run: the CPU check.
GPU_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	$(ROS_ENV) $(GPU_PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build install log *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
