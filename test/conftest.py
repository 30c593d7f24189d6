"""Shared pytest setup: every test process gets its own ROS domain, ROS_HOME and discovery range."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers (model_fixtures)
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # `training` is a source tree, not installed

os.environ.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="ros_home_"))
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 5))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
if "VIRTUAL_ENV" in os.environ:
    os.environ.setdefault("AMENT_PREFIX_PATH", os.environ["VIRTUAL_ENV"])
else:
    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory):
    """A real `tiny` DMCF-SIDE model (seeded, untrained) exported to ONNX with its sidecar.

    Built once per test session by the export code (`test/model_fixtures.py`); returns the path
    of the `.onnx` file (its sidecar is `<path>.json`).
    """
    from model_fixtures import make_tiny_onnx

    return make_tiny_onnx(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_confidence_onnx_model(tmp_path_factory):
    """The same seeded tiny model WITH the uncertainty head (`ModelConfig(variant="tiny", ...,
    uncertainty_head=True)`), exported to ONNX: its sidecar lists confidence outputs per view."""
    from model_fixtures import make_tiny_confidence_onnx

    return make_tiny_confidence_onnx(tmp_path_factory.mktemp("tiny_confidence_model"))


@pytest.fixture(scope="session")
def tiny_thermal_only_onnx_model(tmp_path_factory):
    """A seeded tiny thermal_only baseline (thermal input and view only) exported to ONNX."""
    from model_fixtures import make_tiny_baseline_onnx

    return make_tiny_baseline_onnx(tmp_path_factory.mktemp("tiny_thermal_model"), "thermal_only")


@pytest.fixture
def harness_factory(tiny_onnx_model, tmp_path):
    """make(namespace, **node_params) -> test_node.Harness running the node on the tiny model;
    every harness made is closed after the test."""
    from test_node import Harness

    made = []

    def make(namespace: str, **params) -> Harness:
        made.append(Harness(tiny_onnx_model, tmp_path, namespace, **params))
        return made[-1]

    yield make
    for harness in made:
        harness.close()
