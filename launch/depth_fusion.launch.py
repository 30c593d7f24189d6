"""Launch depth_fusion_node (ROS 2 Jazzy), optionally with static camera TFs and RViz.

    ros2 launch depth_fusion_ros depth_fusion.launch.py model_path:=/models/dmcf.onnx \
        [params_file:=...] [backend:=auto] [device:=cuda] [namespace:=...] \
        [thermal_image:=/my/thermal/image_raw] [thermal_info:=...] [rgb_image:=...] [rgb_info:=...] \
        [thermal_transport:=raw|compressed|compressedDepth] [rgb_transport:=raw|compressed] \
        [use_sim_time:=false] [rviz:=false] [publish_static_tf:=false]

`model_path`, `backend`, `device`, `thermal_transport` and `rgb_transport` override the params
file only when given (non-empty). `thermal_image` / `rgb_image` name the camera's *base* image
topic (e.g. /cam/image_raw) whatever the transport: with `compressed` the node subscribes
<base>/compressed (image_transport's naming), so the remapping moves it too. The cameras' raw
images with their own camera_info are expected (the node rectifies when D is non-zero); for
already rectified images (image_rect) set thermal_rectify/rgb_rectify false in the params file.
`publish_static_tf:=true` is for setups without a URDF: it publishes base_link ->
thermal_optical_frame and base_link -> rgb_optical_frame with tf2_ros'
static_transform_publisher (new-style --x ... --frame-id arguments). The defaults put both
cameras at base_link's origin looking along its x axis (optical z forward, x right, y down).

Fast DDS profile: every process this launch starts gets FASTRTPS_DEFAULT_PROFILES_FILE (Fast DDS
2.x, Jazzy) and FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS 3) = `fastdds_profile`, by default the
variable already exported in the shell (so the node uses what the camera drivers use), else the
package's config/fastdds.xml. Large best-effort images need the same profile in the camera driver:
export the variable there too (README "Inputs"). `fastdds_profile:=''` keeps Fast DDS' built-ins.

The launch ends, saying which process exited with which code, when the node or a static TF
publisher exits (a bad model or parameter makes the node exit with code 2 after a 'cannot start:'
line): it never stays up with a dead node. RViz is a viewer: closing it leaves the node running.
The params file is keyed `/**`, so it applies with any `namespace:=`.
"""
from launch.actions import (
    DeclareLaunchArgument,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "depth_fusion_ros"
# base_link (x fwd, y left, z up) -> camera optical frame (z fwd, x right, y down), REP 103.
OPTICAL_ROLL, OPTICAL_PITCH, OPTICAL_YAW = "-1.5707963267948966", "0.0", "-1.5707963267948966"
INPUT_REMAPS = {  # launch argument -> the node's (relative) input topic
    "thermal_image": "thermal/image_raw",
    "thermal_info": "thermal/camera_info",
    "rgb_image": "rgb/image_raw",
    "rgb_info": "rgb/camera_info",
}
# passed only when non-empty
OPTIONAL_OVERRIDES = ("model_path", "backend", "device", "thermal_transport", "rgb_transport")
# Fast DDS 2.x (ROS 2 Jazzy) reads the first, Fast DDS 3 the second.
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
NODE_EXIT_HINTS = {  # exit code -> meaning, for the message when the node ends the launch
    2: "start-up error: the 'cannot start:' line above names the parameter or model file",
    None: "see its output above",
}


def _shutdown_on_exit(process: Node, what: str, hints: dict) -> RegisterEventHandler:
    """End the whole launch when `process` exits while it runs, logging why.

    `hints` maps an exit code to what it means; key None covers every other code.
    """
    def on_exit(event, context) -> list | None:
        if context.is_shutdown:
            return None  # Ctrl-C or another process already ends the launch
        reason = f"{what} exited with code {event.returncode}"
        hint = hints.get(event.returncode, hints[None])
        return [LogInfo(msg=f"{reason} ({hint}): shutting the launch down"),
                Shutdown(reason=reason)]

    return RegisterEventHandler(OnProcessExit(target_action=process, on_exit=on_exit))


def _static_tf_arguments(camera: str) -> list:
    """Launch arguments for the base_link -> <camera>_optical_frame static transform."""
    defaults = {"x": "0.0", "y": "0.0", "z": "0.0", "roll": OPTICAL_ROLL,
                "pitch": OPTICAL_PITCH, "yaw": OPTICAL_YAW}
    args = [DeclareLaunchArgument(f"{camera}_tf_{k}", default_value=v,
                                  description=f"static TF base_link -> {camera} optical: {k} "
                                              f"({'m' if k in 'xyz' else 'rad'})")
            for k, v in defaults.items()]
    args.append(DeclareLaunchArgument(f"{camera}_frame_id", default_value=f"{camera}_optical_frame",
                                      description=f"child frame of the {camera} static TF"))
    return args


def _static_tf_node(camera: str) -> list:
    """tf2_ros static_transform_publisher for one camera (only with publish_static_tf:=true)."""
    cmd = []
    for key in ("x", "y", "z", "roll", "pitch", "yaw"):
        cmd += [f"--{key}", LaunchConfiguration(f"{camera}_tf_{key}")]
    cmd += ["--frame-id", LaunchConfiguration("base_frame_id"),
            "--child-frame-id", LaunchConfiguration(f"{camera}_frame_id")]
    static_tf = Node(package="tf2_ros", executable="static_transform_publisher",
                     name=f"{camera}_static_tf", namespace=LaunchConfiguration("namespace"),
                     arguments=cmd,
                     parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                     condition=IfCondition(LaunchConfiguration("publish_static_tf")))
    hints = {None: f"check the {camera}_tf_* and {camera}_frame_id arguments"}
    return [static_tf, _shutdown_on_exit(static_tf, f"{camera} static_transform_publisher", hints)]


def _depth_fusion_node(context) -> list:
    """The node, with the optional overrides that were actually given on the command line."""
    overrides = {}
    for name in OPTIONAL_OVERRIDES:
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    node = Node(
        package=PACKAGE, executable="depth_fusion_node", name="depth_fusion",
        namespace=LaunchConfiguration("namespace"), output="screen", emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), overrides,
                    {"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[(topic, LaunchConfiguration(arg)) for arg, topic in INPUT_REMAPS.items()],
    )
    return [node, _shutdown_on_exit(node, "depth_fusion_node", NODE_EXIT_HINTS)]


def fastdds_profile(share) -> list:
    """The `fastdds_profile` argument and the environment of every process started after it."""
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
    args = fastdds_profile(share) + [
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "depth_fusion.yaml"]),
                              description="node parameter YAML (ros__parameters)"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="exported model (.onnx/.engine/.pt2); '' = params file"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | tensorrt | onnxruntime | torch; '' = params file"),
        DeclareLaunchArgument("device", default_value="",
                              description="cuda | cuda:N | cpu; '' = params file"),
        DeclareLaunchArgument("thermal_transport", default_value="",
                              description="raw | compressed | compressedDepth (thermal_image is "
                                          "the base topic); '' = params file"),
        DeclareLaunchArgument("rgb_transport", default_value="",
                              description="raw | compressed (rgb_image is the base topic); "
                                          "'' = params file"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("rviz_config",
                              default_value=PathJoinSubstitution([share, "config", "depth_fusion.rviz"]),
                              description="RViz configuration"),
        DeclareLaunchArgument("publish_static_tf", default_value="false",
                              description="publish base_link -> camera optical frames (no URDF)"),
        DeclareLaunchArgument("base_frame_id", default_value="base_link",
                              description="parent frame of the static TFs"),
    ]
    for arg, topic in INPUT_REMAPS.items():
        args.append(DeclareLaunchArgument(arg, default_value=topic,
                                          description=f"topic remapped onto the node's {topic}"))
    args += _static_tf_arguments("thermal") + _static_tf_arguments("rgb")
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", LaunchConfiguration("rviz_config")],
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(args + [OpaqueFunction(function=_depth_fusion_node)]
                             + _static_tf_node("thermal") + _static_tf_node("rgb") + [rviz])
