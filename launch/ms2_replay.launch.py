"""Replay an MS2 bag (from `ms2_to_bag`) into depth_fusion_node, score it live, watch it in RViz.

    ros2 launch depth_fusion_ros ms2_replay.launch.py bag:=/data/bags/seq.bag \
        model_path:=/models/dmcf.onnx [rate:=1.0] [loop:=false] [device:=cpu] [rviz:=true] \
        [csv_path:=/tmp/ms2_eval.csv] [summary_path:=/tmp/ms2_eval.md] [play_delay:=5.0] \
        [fastdds_profile:=...]

Starts `ros2 bag play BAG --clock` (the bag carries /tf_static, camera images and infos and the
/gt/*/depth ground truth), depth_fusion.launch.py with use_sim_time, the depth_fusion_evaluator
(metrics on /diagnostics and /depth_fusion_evaluator/metrics, CSV and summary at shutdown) and
RViz with config/depth_fusion.rviz. Every process gets the Fast DDS profile `fastdds_profile`
(as in depth_fusion.launch.py).

Lossless by default: ms2_to_bag records the camera topics reliable, `ros2 bag play` offers what was
recorded and the node's input_qos auto subscribes reliable. The player waits `play_delay` seconds
after creating its publishers (`--delay`), time for the node to load its model and subscribe and
for the evaluator to subscribe (raise it for a model that loads slower, e.g. a first TensorRT
engine build), and at the end waits for every subscriber's acknowledgement
(`--wait-for-all-acked`); the launch then stays up BAG_TAIL_S more seconds so the last pairs are
processed and scored. At rate 1.0 every frame is evaluated unless the node is slower than the
bag: those drops are the node's own (its /diagnostics pairs_dropped) and the evaluator's summary
says "N of M ground-truth frames evaluated".

The replay ends, with a message naming the process and its exit code, when the player exits (the
bag has been played to its end, or `ros2 bag` failed: rosbag2 missing, no bag at `bag:=`), when
the evaluator exits or (handled in depth_fusion.launch.py) when the node exits. On that shutdown
the evaluator writes its CSV and summary of what it scored. Closing RViz ends nothing.
"""
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
    TimerAction,
)
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "depth_fusion_ros"
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
BAG_TAIL_S = 5.0  # after the bag's end: the node's last pairs reach the evaluator
ACK_TIMEOUT_MS = "10000"  # ros2 bag play --wait-for-all-acked: at most this long at the end
BAG_EXIT_HINTS = {  # exit code -> meaning, for the message when the player ends the replay
    0: "the bag has been played to its end",
    None: "see its output above: is rosbag2 installed (ros-jazzy-rosbag2) and is bag:= a "
          "rosbag2 folder written by ms2_to_bag?",
}
EVALUATOR_EXIT_HINTS = {
    2: "start-up error: its 'error:' line above names the parameter",
    None: "see its output above",
}


def _shutdown_on_exit(process: ExecuteProcess, what: str, hints: dict,
                      tail_s: float = 0.0) -> RegisterEventHandler:
    """End the whole launch when `process` exits while it runs, logging why.

    `hints` maps an exit code to what it means; key None covers every other code. After a
    successful exit (code 0) the launch stays up `tail_s` more seconds. (The same helper as in
    depth_fusion.launch.py: launch files are loaded by path, not imported.)
    """
    def on_exit(event, context) -> list | None:
        if context.is_shutdown:
            return None  # Ctrl-C or another process already ends the launch
        reason = f"{what} exited with code {event.returncode}"
        hint = hints.get(event.returncode, hints[None])
        if event.returncode == 0 and tail_s > 0:
            return [LogInfo(msg=f"{reason} ({hint}): shutting the launch down in {tail_s:g} s "
                                "(the last frames are still being processed and scored)"),
                    TimerAction(period=tail_s, actions=[Shutdown(reason=reason)])]
        return [LogInfo(msg=f"{reason} ({hint}): shutting the launch down"),
                Shutdown(reason=reason)]

    return RegisterEventHandler(OnProcessExit(target_action=process, on_exit=on_exit))


def _bag_play(loop: bool) -> list:
    """`ros2 bag play BAG --rate R [--loop] --clock --delay D --wait-for-all-acked MS` (the bag
    publishes /clock for sim time; see the module docstring for the delay and the acks)."""
    cmd = ["ros2", "bag", "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate")]
    if loop:
        cmd.append("--loop")
    cmd.append("--clock")
    cmd += ["--delay", LaunchConfiguration("play_delay"), "--wait-for-all-acked", ACK_TIMEOUT_MS]
    condition = IfCondition if loop else UnlessCondition
    play = ExecuteProcess(cmd=cmd, name="bag_play", output="screen",
                          condition=condition(LaunchConfiguration("loop")))
    return [play, _shutdown_on_exit(play, "ros2 bag play", BAG_EXIT_HINTS, tail_s=BAG_TAIL_S)]


def _fastdds_profile(share) -> list:
    """The `fastdds_profile` argument and the environment of every process of the replay."""
    default = EnvironmentVariable(PROFILE_VARIABLES[0], default_value=PathJoinSubstitution(
        [share, "config", "fastdds.xml"]))
    arg = DeclareLaunchArgument("fastdds_profile", default_value=default,
                                description="Fast DDS XML profile for every process ('' = "
                                            "Fast DDS built-ins); default: the exported "
                                            f"{PROFILE_VARIABLES[0]}, else config/fastdds.xml")
    return [arg] + [SetEnvironmentVariable(name, LaunchConfiguration("fastdds_profile"))
                    for name in PROFILE_VARIABLES]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    args = _fastdds_profile(share) + [
        DeclareLaunchArgument("bag", description="rosbag2 folder written by ms2_to_bag"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("play_delay", default_value="5.0",
                              description="seconds between the player's start and its first "
                                          "message: time for the node to load its model and "
                                          "subscribe (raise for slow-loading models)"),
        DeclareLaunchArgument("loop", default_value="false", description="replay forever"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "depth_fusion.yaml"]),
                              description="node parameter YAML"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="exported model; '' = the params file's model_path"),
        DeclareLaunchArgument("backend", default_value="", description="'' = params file"),
        DeclareLaunchArgument("device", default_value="", description="'' = params file"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz"),
        DeclareLaunchArgument("evaluator_params",
                              default_value=PathJoinSubstitution([share, "config", "evaluator.yaml"]),
                              description="evaluator parameter YAML"),
        DeclareLaunchArgument("csv_path", default_value="ms2_eval.csv",
                              description="per-frame metrics CSV (relative to the launch cwd)"),
        DeclareLaunchArgument("summary_path", default_value="ms2_eval.md",
                              description="Markdown summary written at shutdown"),
    ]
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch",
                                                            "depth_fusion.launch.py"])),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file"),
            "model_path": LaunchConfiguration("model_path"),
            "backend": LaunchConfiguration("backend"),
            "device": LaunchConfiguration("device"),
            "use_sim_time": "true",
            "rviz": LaunchConfiguration("rviz"),
            "publish_static_tf": "false",  # the bag's /tf_static has the calibrated transforms
            "fastdds_profile": LaunchConfiguration("fastdds_profile"),
        }.items(),
    )
    evaluator = Node(
        package=PACKAGE, executable="depth_fusion_evaluator", name="depth_fusion_evaluator",
        output="screen", emulate_tty=True,
        parameters=[LaunchConfiguration("evaluator_params"),
                    {"csv_path": LaunchConfiguration("csv_path"),
                     "summary_path": LaunchConfiguration("summary_path"),
                     "use_sim_time": True}],
    )
    return LaunchDescription(args + _bag_play(loop=False) + _bag_play(loop=True) + [
        node, evaluator,
        _shutdown_on_exit(evaluator, "depth_fusion_evaluator", EVALUATOR_EXIT_HINTS),
    ])
