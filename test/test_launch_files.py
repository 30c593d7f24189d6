"""Launch files, parameter YAMLs and the RViz config, checked without `launch` installed.

`launch`/`launch_ros` are not pip-installable here, so the launch files are checked statically
(AST): they compile, every executable they start is installed by setup.py (under
lib/depth_fusion_ros via setup.cfg) or is a known ROS tool, every parameter they pass is one the
node or the evaluator declares, and every argument passed to an included launch file is declared
there. The YAMLs load with rclpy's own parser and hold only declared parameters.
"""
from __future__ import annotations

import ast
import py_compile
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import parameter_dict_from_yaml_file

from depth_fusion_ros import evaluator, params
from depth_fusion_ros.bag.ms2_to_bag import BASE_FRAME, OPTICAL_FRAMES

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
FOREIGN_EXECUTABLES = {("tf2_ros", "static_transform_publisher"), ("rviz2", "rviz2")}
ROS_BUILTIN_PARAMS = {"use_sim_time"}  # declared by rclpy for every node


def _console_scripts() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {ast.literal_eval(e).split("=")[0].strip() for e in value.elts}
    raise AssertionError("setup.py declares no console_scripts")


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level NAME = <literal> assignments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, AttributeError):
                pass
    return out


def _value(node: ast.AST, consts: dict[str, object]):
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    return node.value if isinstance(node, ast.Constant) else None


def _node_calls(tree: ast.Module, consts: dict) -> list[tuple[str, str, set[str]]]:
    """(package, executable, literal parameter names) of every Node(...) call."""
    found = []
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node"):
            continue
        kw = {k.arg: k.value for k in call.keywords}
        names = set()
        for item in getattr(kw.get("parameters"), "elts", []):
            if isinstance(item, ast.Dict):
                names |= {_value(k, consts) for k in item.keys}
        found.append((_value(kw["package"], consts), _value(kw["executable"], consts), names))
    return found


def _declared_launch_args(tree: ast.Module, consts: dict) -> set[str]:
    names = set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DeclareLaunchArgument":
            first = call.args[0]
            if isinstance(first, ast.JoinedStr):  # f"{camera}_tf_{k}" built in a helper
                continue
            names.add(_value(first, consts))
    names |= set(consts.get("INPUT_REMAPS", {}))
    return names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_names_installed_executables(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    consts = _constants(tree)
    assert "generate_launch_description" in {f.name for f in tree.body
                                             if isinstance(f, ast.FunctionDef)}
    scripts = _console_scripts()
    calls = _node_calls(tree, consts)
    assert calls, f"{path.name} starts no Node"
    for package, executable, _ in calls:
        if package == "depth_fusion_ros":
            assert executable in scripts, f"{path.name}: {executable} is not a console script"
        else:
            assert (package, executable) in FOREIGN_EXECUTABLES
    setup_cfg = (REPO / "setup.cfg").read_text()
    assert "install_scripts=$base/lib/depth_fusion_ros" in setup_cfg  # where `ros2 run` looks


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parameters_are_declared(path):
    tree = ast.parse(path.read_text())
    consts = _constants(tree)
    declared = {"depth_fusion_node": set(params.PARAMETERS),
                "depth_fusion_evaluator": set(evaluator.PARAMETERS)}
    for package, executable, names in _node_calls(tree, consts):
        allowed = declared.get(executable, set()) | ROS_BUILTIN_PARAMS
        if package == "depth_fusion_ros":
            assert names <= allowed, f"{path.name}: {names - allowed} not declared by {executable}"
    overrides = set(consts.get("OPTIONAL_OVERRIDES", ()))
    assert overrides <= set(params.PARAMETERS)
    remapped = set(consts.get("INPUT_REMAPS", {}).values())
    if remapped:  # the node's documented input topics (DESIGN section 2)
        assert remapped == {"thermal/image_raw", "thermal/camera_info", "rgb/image_raw",
                            "rgb/camera_info"}


def test_replay_passes_only_declared_arguments_to_the_node_launch():
    main = ast.parse((REPO / "launch" / "depth_fusion.launch.py").read_text())
    declared = _declared_launch_args(main, _constants(main))
    assert {"params_file", "model_path", "backend", "namespace", "use_sim_time", "rviz",
            "publish_static_tf", "thermal_image", "rgb_info"} <= declared
    replay = ast.parse((REPO / "launch" / "ms2_replay.launch.py").read_text())
    passed = set()
    for call in ast.walk(replay):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "IncludeLaunchDescription":
            for kw in call.keywords:
                if kw.arg == "launch_arguments":
                    passed |= {k.value for k in kw.value.func.value.keys}
    assert passed and passed <= declared, passed - declared
    text = (REPO / "launch" / "ms2_replay.launch.py").read_text()
    assert '"ros2", "bag", "play"' in text and '"--clock"' in text
    # The static TF children default to the frames ms2_to_bag writes, so bag and live agree.
    main_text = (REPO / "launch" / "depth_fusion.launch.py").read_text()
    assert 'f"{camera}_optical_frame"' in main_text and set(OPTICAL_FRAMES) == {"thermal", "rgb"}


@pytest.mark.parametrize(("name", "table"), [("depth_fusion.yaml", params.PARAMETERS),
                                             ("evaluator.yaml", evaluator.PARAMETERS)])
def test_param_yaml_loads_with_rclpy_and_is_declared(name, table):
    loaded = parameter_dict_from_yaml_file(str(REPO / "config" / name))
    assert loaded, name
    assert set(loaded) <= set(table), f"{name}: undeclared {set(loaded) - set(table)}"
    if name == "evaluator.yaml":
        assert set(loaded) == set(table)  # every evaluator parameter documented
        assert list(loaded["views"].value.string_array_value) == ["thermal", "rgb"]
        assert loaded["max_depth_m"].value.double_value == pytest.approx(80.0)


def test_rviz_config_names_published_topics_and_frame():
    cfg = yaml.safe_load((REPO / "config" / "depth_fusion.rviz").read_text())
    manager = cfg["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == BASE_FRAME
    displays = {d["Name"]: d for d in manager["Displays"]}
    topics = {d["Topic"]["Value"]: d for d in displays.values() if "Topic" in d}
    for view in ("thermal", "rgb"):
        assert f"/{view}/depth/image" in topics and f"/{view}/image_raw" in topics
        assert topics[f"/{view}/depth/points"]["Class"] == "rviz_default_plugins/PointCloud2"
    assert topics["/thermal/depth/points"]["Color Transformer"] == "Intensity"
    assert topics["/thermal/depth/points"]["Channel Name"] == "intensity"
    assert topics["/rgb/depth/points"]["Color Transformer"] == "RGB8"
    assert any(d["Class"] == "rviz_default_plugins/TF" for d in displays.values())
