"""Launch files, parameter YAMLs and the RViz config, checked without `launch` installed.

`launch`/`launch_ros` are not pip-installable here, so the launch files are checked statically
(AST): they compile, every executable they start is installed by setup.py (under
lib/depth_fusion_ros via setup.cfg) or is a known ROS tool, every parameter they pass is one the
node or the evaluator declares, every argument passed to an included launch file is declared
there, and every process the launch depends on ends the launch (with a message) when it exits.
The YAMLs load with rclpy's own parser, are keyed `/**` so they reach the node in any namespace,
and hold only declared parameters. Where ROS 2 `launch` is installed (a Jazzy machine with the
package built by colcon), the launch files are also run for real.
"""
from __future__ import annotations

import ast
import py_compile
import shutil
import subprocess
import sys
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
PROCESS_ACTIONS = {"Node", "ExecuteProcess"}
# A viewer: closing RViz must not end the node or the replay (Ctrl-C does).
MAY_EXIT_ALONE = {("rviz2", "rviz2")}


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


def _call_name(call: ast.Call) -> str | None:
    """`Shutdown` for Shutdown(...), launch.actions.Shutdown(...) and events.Shutdown(...)."""
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _calls(node: ast.AST) -> list[ast.Call]:
    return [c for c in ast.walk(node) if isinstance(c, ast.Call)]


def _ends_launch_with_message(node: ast.AST) -> bool:
    """The code logs a message and shuts the launch down (LogInfo + Shutdown action or event)."""
    names = {_call_name(c) for c in _calls(node)}
    return {"LogInfo", "Shutdown"} <= names


def _shutdown_helpers(tree: ast.Module) -> set[str]:
    """Functions f(process, ...) registering OnProcessExit(target_action=process) whose handler
    logs a message and shuts the launch down."""
    helpers = set()
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.args.args):
            continue
        first = fn.args.args[0].arg
        targets = {kw.value.id for c in _calls(fn) if _call_name(c) == "OnProcessExit"
                   for kw in c.keywords
                   if kw.arg == "target_action" and isinstance(kw.value, ast.Name)}
        registered = "RegisterEventHandler" in {_call_name(c) for c in _calls(fn)}
        if first in targets and registered and _ends_launch_with_message(fn):
            helpers.add(fn.name)
    return helpers


def _process_identity(call: ast.Call, consts: dict) -> tuple:
    kw = {k.arg: k.value for k in call.keywords}
    if _call_name(call) == "Node":
        return (_value(kw["package"], consts), _value(kw["executable"], consts))
    return ("process", _value(kw.get("name"), consts))


def _exit_handling(tree: ast.Module, consts: dict) -> dict[tuple, list[bool]]:
    """Process identity -> for each Node/ExecuteProcess creating it: does its exit end the launch?

    Accepted: `on_exit=[..., Shutdown(...)]` on the action itself, or the action bound to a name
    that the same function passes to a shutdown helper or as OnProcessExit(target_action=name)
    of a handler that logs and shuts down.
    """
    helpers = _shutdown_helpers(tree)
    found: dict[tuple, list[bool]] = {}
    for fn in (f for f in tree.body if isinstance(f, ast.FunctionDef)):
        bound = {}
        for stmt in ast.walk(fn):
            if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)
                    and _call_name(stmt.value) in PROCESS_ACTIONS
                    and isinstance(stmt.targets[0], ast.Name)):
                bound[id(stmt.value)] = stmt.targets[0].id
        guarded = set()
        for call in _calls(fn):
            if _call_name(call) in helpers and call.args and isinstance(call.args[0], ast.Name):
                guarded.add(call.args[0].id)
            if _call_name(call) == "OnProcessExit" and _ends_launch_with_message(call):
                guarded |= {kw.value.id for kw in call.keywords if kw.arg == "target_action"
                            and isinstance(kw.value, ast.Name)}
        for call in _calls(fn):
            if _call_name(call) not in PROCESS_ACTIONS or not call.keywords:
                continue
            own = [kw.value for kw in call.keywords if kw.arg == "on_exit"]
            ok = (bound.get(id(call)) in guarded
                  or any("Shutdown" in {_call_name(c) for c in _calls(v)} for v in own))
            found.setdefault(_process_identity(call, consts), []).append(ok)
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


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_process_but_rviz_ends_the_launch_when_it_exits(path):
    tree = ast.parse(path.read_text())
    handling = _exit_handling(tree, _constants(tree))
    assert handling, f"{path.name} starts no process"
    for process, ends_launch in handling.items():
        if process in MAY_EXIT_ALONE:
            continue
        assert all(ends_launch), (f"{path.name}: {process} can exit while the launch stays up: "
                                  f"register OnProcessExit(target_action=...) with a LogInfo "
                                  f"and a Shutdown for it")


def test_replay_ends_when_any_process_it_depends_on_exits():
    replay = ast.parse((REPO / "launch" / "ms2_replay.launch.py").read_text())
    handling = _exit_handling(replay, _constants(replay))
    # the player (one ExecuteProcess, built for loop:=false and for loop:=true) and the evaluator
    assert handling[("process", "bag_play")] == [True]
    assert handling[("depth_fusion_ros", "depth_fusion_evaluator")] == [True]
    # the node comes from depth_fusion.launch.py, whose handler is global to the launch
    main = ast.parse((REPO / "launch" / "depth_fusion.launch.py").read_text())
    assert _exit_handling(main, _constants(main))[("depth_fusion_ros", "depth_fusion_node")] == [True]
    included = [c for c in _calls(replay) if _call_name(c) == "IncludeLaunchDescription"]
    assert len(included) == 1 and "depth_fusion.launch.py" in ast.unparse(included[0])


def test_nodes_get_their_params_file_first_so_overrides_win():
    expected = {"depth_fusion_node": "params_file", "depth_fusion_evaluator": "evaluator_params"}
    seen = set()
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        consts = _constants(tree)
        for call in _calls(tree):
            kw = {k.arg: k.value for k in call.keywords}
            if _call_name(call) != "Node" or _value(kw["package"], consts) != "depth_fusion_ros":
                continue
            executable = _value(kw["executable"], consts)
            first = kw["parameters"].elts[0]
            assert ast.unparse(first) == f"LaunchConfiguration('{expected[executable]}')", path
            # then only dicts (literal or the `overrides` built from given launch arguments)
            assert all(isinstance(e, (ast.Dict, ast.Name)) for e in kw["parameters"].elts[1:])
            seen.add(executable)
    assert seen == set(expected)


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_param_yaml_is_keyed_by_wildcard_to_match_any_namespace(path):
    # `depth_fusion:` only matches /depth_fusion; `/**` also matches /cam/depth_fusion.
    assert list(yaml.safe_load(path.read_text())) == ["/**"]


@pytest.mark.parametrize(("name", "table"), [("depth_fusion.yaml", params.PARAMETERS),
                                             ("evaluator.yaml", evaluator.PARAMETERS)])
def test_param_yaml_loads_with_rclpy_and_is_declared(name, table):
    loaded = parameter_dict_from_yaml_file(str(REPO / "config" / name), use_wildcard=True)
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


# --- the launch files run by the real ROS 2 launch (skipped where it is not installed) ---------
RUN_LAUNCH = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

service = LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]),
    launch_arguments=[tuple(arg.split(":=", 1)) for arg in sys.argv[2:]]))
sys.exit(service.run())
"""


def _real_launch_missing() -> str | None:
    """Why the launch files cannot be run for real on this machine, or None if they can."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:  # (this repository's launch/ folder would import as an empty namespace package)
        from launch_ros.actions import Node  # noqa: F401

        from launch import LaunchService  # noqa: F401
    except ImportError as err:
        return f"ROS 2 launch is not installed ({err}); the launch files are checked statically"
    try:
        prefix = Path(get_package_prefix("depth_fusion_ros"))
    except PackageNotFoundError:
        return "depth_fusion_ros is not in AMENT_PREFIX_PATH (build it with colcon and source it)"
    if not (prefix / "lib" / "depth_fusion_ros" / "depth_fusion_node").exists():
        return f"no {prefix}/lib/depth_fusion_ros/depth_fusion_node (a colcon install has it)"
    return None


def _run_launch(launch_file: str, arguments: list[str], cwd: Path) -> str:
    """Run a launch file to its end (it must end by itself within 120 s); returns its output."""
    result = subprocess.run([sys.executable, "-c", RUN_LAUNCH, str(REPO / "launch" / launch_file),
                             *arguments], cwd=cwd, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def test_real_launch_ends_with_a_message_when_the_node_cannot_start(tmp_path):
    missing = _real_launch_missing()
    if missing:
        pytest.skip(missing)
    output = _run_launch("depth_fusion.launch.py", [f"model_path:={tmp_path}/none.onnx",
                                                    "device:=cpu", "namespace:=cam"], tmp_path)
    assert "none.onnx does not exist" in output
    assert ("depth_fusion_node exited with code 2 (start-up error: the 'cannot start:' line above "
            "names the parameter or model file): shutting the launch down") in output


def test_real_replay_ends_with_a_message_when_the_player_fails(request, tmp_path):
    missing = _real_launch_missing() or (None if shutil.which("ros2") else "no ros2 CLI on PATH")
    if missing:
        pytest.skip(missing)
    tiny_onnx_model = request.getfixturevalue("tiny_onnx_model")  # built only when it runs
    # No bag at bag:= (or no rosbag2 at all): `ros2 bag play` exits non-zero at once.
    output = _run_launch("ms2_replay.launch.py", [
        f"bag:={tmp_path}/no_such_bag", f"model_path:={tiny_onnx_model}", "device:=cpu",
        "rviz:=false"], tmp_path)
    assert "ros2 bag play exited with code" in output
    assert "shutting the launch down" in output
