"""depth_fusion_node: thermal + RGB in, metric depth images, camera_infos and point clouds out.

Thin rclpy glue (topics and policy: DESIGN.md section 2). Subscriptions run on the executor
thread and only validate, judge usability (degraded.py, `check_image_usable`), route
(sync.InputRouter: pairs in fused mode, single images in single-camera mode) and queue
(sync.PairQueue); the worker (stages.StageRunner) runs each input through three stages, prepare
(decode, rectify, preprocess: pipeline.DepthPipeline), infer (the backend) and publish
(postprocess, publish), each on its own thread with `pipelined: true` (the default: input N+1 is
prepared while N is inferred and N-1 published), or all on one thread. The subscriptions
therefore keep draining while inference runs. While the worker keeps up with the cameras a
burst of pairs waits and is processed; a model slower than the cameras never builds a backlog:
only the newest input waits, replaced ones are counted as dropped.

Single-camera mode: a camera silent for stale_timeout_s (or sending unusable images) is missing;
the node runs on the other one alone, feeding the network `preprocess.missing_input` in its place,
and publishes only the surviving view. /diagnostics reports `mode` (WARN outside fused) and why;
the node returns to fused mode on the missing camera's next usable image. A model that reads one
camera (a baseline) subscribes and runs that camera alone.

Input QoS `auto` (the default) subscribes each input with the reliability and durability its
publishers offer (qos_match.py), re-checked every QOS_RECHECK_S so a camera started later, or a
best-effort one joining reliable ones, is matched too. The executor is rclpy's EventsExecutor
(`executor: events`): it dispatches a message with less Python per callback than the
SingleThreadedExecutor, which leaves more of the GIL to the worker.

Run: depth_fusion_node --ros-args --params-file config/depth_fusion.yaml -p model_path:=m.onnx
"""
from __future__ import annotations

import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_fusion_ros.degraded import ModeTracker
from depth_fusion_ros.diagnostics import ModeStatus, NodeStats
from depth_fusion_ros.params import (
    LIVE_PARAMETERS,
    PARAMETERS,
    NodeParams,
    ParameterError,
    check_against_model,
    declare_and_read,
    help_text,
    parameter_defaults,
    wants_help,
    with_changes,
)
from depth_fusion_ros.pipeline import (
    VIEWS,
    BadInput,
    DepthPipeline,
    PipelineConfig,
    accept_image,
    camera_info_error,
)
from depth_fusion_ros.qos_match import (
    AUTO_DEPTH,
    RELIABLE,
    TRANSIENT_LOCAL,
    Offer,
    QosChoice,
    QosMatcher,
    summarise,
)
from depth_fusion_ros.stages import Stage, StageRunner
from depth_fusion_ros.sync import ApproximateTimeSync, InputRouter, PairQueue, Work

NODE_NAME = "depth_fusion"
QOS_RECHECK_S = 0.5  # input_qos auto: how often the publishers on each input are looked up
# Stamp-to-publish latencies beyond this mean the stamps come from another clock (a bag replayed
# without --clock / use_sim_time): said once in the log.
CLOCK_MISMATCH_S = 60.0


def qos_profile(name: str) -> QoSProfile:
    """QoS named by the input_qos/output_qos parameters."""
    if name == "sensor_data":
        return qos_profile_sensor_data  # best effort, keep last 5 (REP 2003)
    if name == "system_default":
        return qos_profile_system_default
    reliability = ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=5, reliability=reliability)


def matched_qos_profile(choice: QosChoice) -> QoSProfile:
    """The subscription QoS of an input_qos auto decision."""
    return QoSProfile(
        depth=AUTO_DEPTH,
        reliability=(ReliabilityPolicy.RELIABLE if choice.reliability == RELIABLE
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if choice.durability == TRANSIENT_LOCAL
                    else DurabilityPolicy.VOLATILE))


class Input:
    """One subscribed topic: what to subscribe, the subscription, and its auto-QoS decision.

    raw: the callback gets the message's serialized bytes (Image inputs: pipeline.SerializedImage
    reads them without the copies of rclpy's typed take).
    """

    def __init__(self, kind, topic: str, callback, raw: bool = False):
        self.kind, self.topic, self.callback, self.raw = kind, topic, callback, raw
        self.subscription = None
        self.matcher = QosMatcher()

    def subscribe(self, node: Node, qos: QoSProfile) -> None:
        if self.subscription is not None:
            node.destroy_subscription(self.subscription)
        self.subscription = node.create_subscription(self.kind, self.topic, self.callback, qos,
                                                     raw=self.raw)


class InFlight:
    """One input on its way through the stages (stages.py)."""

    def __init__(self, work: Work, thermal_info: CameraInfo | None, rgb_info: CameraInfo | None):
        self.work, self.infos = work, (thermal_info, rgb_info)
        self.prepared = None  # pipeline.Prepared, after the prepare stage
        self.net: dict = {}  # Backend.infer_outputs, after the infer stage


class DepthFusionNode(Node):
    """The node; raises ParameterError / ModelMetadataError / ValueError at start-up."""

    def __init__(self, cli_args: list[str] | None = None, **node_kwargs):
        """cli_args: the command line rclpy.init got (default sys.argv), to check overrides."""
        super().__init__(NODE_NAME, **node_kwargs)
        self.params: NodeParams = declare_and_read(self, cli_args)
        p = self.params
        md = self._load_model()
        self.pipeline = DepthPipeline(pipeline_config(p, self.views, (md.height, md.width)))
        self.stats = NodeStats(self.cameras, p.stale_timeout_s, time.monotonic())
        self.stats.info.update(self.details)
        self.stats.info["worker"] = "pipelined" if p.pipelined else "sequential"
        shown = ["pairs_processed", "colored_published", "processed_fused",
                 "processed_thermal_only", "processed_rgb_only", "processing_errors",
                 *(f"unusable_{camera}" for camera in self.cameras)]
        if p.input_qos == "auto":
            shown.append("input_qos_changes")
        for name in shown:
            self.stats.set_count(name, 0)  # shown from the start: a fixed key set
        self.sync = ApproximateTimeSync(p.sync_slop_s, p.sync_queue_size)
        self.tracker = ModeTracker(p.stale_timeout_s, needed=self.cameras, restart_grace=True)
        self.router = InputRouter(self.sync, self.tracker, self.views)
        self._mode = "none"  # the last mode logged: no camera yet
        self.queue = PairQueue(p.pair_queue_size)
        self._infos: dict[str, CameraInfo | None] = {v: None for v in VIEWS}
        self._last_warn: dict[tuple[str, str], float] = {}
        self._clock_warned = False  # the stamps-from-another-clock warning was logged
        self._make_publishers()
        self._make_subscriptions()
        self.runner = self._make_runner()
        self.runner.start()
        # Steady-clock timers: with use_sim_time they must run before /clock does (a bag player
        # waiting for subscribers publishes no /clock yet) and while a replay is paused.
        self.create_timer(p.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        # `ros2 param set` on LIVE_PARAMETERS (the others are read-only): checked, then applied
        self.add_on_set_parameters_callback(self._check_parameter_changes)
        self.add_post_set_parameters_callback(self._apply_parameter_changes)

    def _load_model(self):
        """Backend, warm-up, and what the model decides: views, cameras, confidence outputs."""
        from depth_fusion_ros.backends import (  # after params: errors name them
            backend_details,
            create_backend,
        )

        p = self.params
        # An .onnx with backend tensorrt builds its engine on the first start on this machine
        # (minutes, progress logged; a concurrent start waits for it), then loads it from
        # engine_cache_dir.
        self.backend = create_backend(
            p.model_path, p.backend, p.device, p.ort_num_threads or None,
            allow_spinning=p.ort_allow_spinning, precision=p.precision,
            engine_cache_dir=p.engine_cache_dir or None, workspace_gb=p.engine_workspace_gb,
            calib_data=p.engine_calib_data or None, log=self.get_logger().info)
        md = self.backend.metadata
        check_against_model(p, p.model_path, md.views, md.confidence_views)
        self.views = tuple(v for v in VIEWS if getattr(p, f"publish_{v}"))
        # The cameras the network reads: both for a fusion model, one for a baseline.
        self.cameras = tuple(v for v in VIEWS if v in {spec.view for spec in md.inputs})
        self.confidence_views = tuple(v for v in self.views if v in md.confidence_views)
        self.get_logger().info(f"model {p.model_path}: {self.backend.describe()}")
        if not self.confidence_views:
            self.get_logger().info(f"model {p.model_path} has no confidence outputs: no "
                                   "{view}/depth/confidence is published")
        warm_ms = self.backend.warmup(p.warmup_iterations)
        self.get_logger().info(f"warm-up: {p.warmup_iterations} runs, last {warm_ms:.1f} ms")
        self.details = {"backend": self.backend.name, "device": self.backend.device,
                        "precision": self.backend.precision, "model_id": md.model_id,
                        **backend_details(self.backend)}
        return md

    # --- wiring -------------------------------------------------------------------------------
    def _make_publishers(self) -> None:
        qos = qos_profile(self.params.output_qos)
        self.pubs = {}
        for view in self.views:
            self.pubs[view] = {
                "image": self.create_publisher(Image, f"{view}/depth/image", qos),
                "info": self.create_publisher(CameraInfo, f"{view}/depth/camera_info", qos),
                "points": (self.create_publisher(PointCloud2, f"{view}/depth/points", qos)
                           if self.params.publish_points else None),
                "confidence": (self.create_publisher(Image, f"{view}/depth/confidence", qos)
                               if view in self.confidence_views else None),
                "colored": self.create_publisher(Image, f"{view}/depth/colored", qos),
            }
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _make_subscriptions(self) -> None:
        self.image_topics, self.info_topics = {}, {}
        self.inputs: list[Input] = []
        for stream, view in enumerate(VIEWS):
            if view not in self.cameras:
                continue  # a baseline model: the camera it does not read is not subscribed
            # camera_info first: the single_threaded executor serves ready subscriptions in
            # creation order (the events executor in arrival order, and drivers and bags send
            # the info before its image), so the info is cached before its image forms a pair.
            info_topic = self.resolve_topic_name(f"{view}/camera_info")
            self.inputs.append(Input(CameraInfo, info_topic, lambda m, v=view: self._on_info(v, m)))
            transport = getattr(self.params, f"{view}_transport")
            kind, topic = Image, self.resolve_topic_name(f"{view}/image_raw")
            if transport != "raw":
                # image_transport's naming: <base>/<transport>, the base topic resolved with the
                # remappings first, so remapping thermal/image_raw moves the compressed one too.
                kind, topic = CompressedImage, f"{topic}/{transport}"
            self.inputs.append(Input(kind, topic, lambda m, s=stream: self._on_image(s, m),
                                     raw=kind is Image))
            self.image_topics[view], self.info_topics[view] = topic, info_topic
        if self.params.input_qos != "auto":
            for item in self.inputs:
                item.subscribe(self, qos_profile(self.params.input_qos))
            return
        self.get_logger().info("input_qos auto: each input is subscribed once a publisher "
                               "appears, with its QoS: " + ", ".join(i.topic for i in self.inputs))
        self._match_inputs()
        self.create_timer(QOS_RECHECK_S, self._match_inputs,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _match_inputs(self) -> None:
        """input_qos auto: (re)subscribe every input whose publishers ask for another QoS."""
        if not self.context.ok():
            return  # shutting down: the graph can no longer be read
        for item in self.inputs:
            offers = [Offer.of(info.qos_profile.reliability.name, info.qos_profile.durability.name)
                      for info in self.get_publishers_info_by_topic(item.topic)]
            choice = item.matcher.update(offers)
            if choice is None:
                continue
            if item.subscription is not None:
                self.stats.count("input_qos_changes")
            item.subscribe(self, matched_qos_profile(choice))
            self.stats.info[f"qos:{item.topic}"] = f"{choice.reliability}/{choice.durability}"
            self.get_logger().info(f"input_qos auto: {item.topic}: {summarise(offers)} -> "
                                   f"subscribed {choice.describe()}")

    # --- executor thread: validate, pair, hand over ---------------------------------------------
    def _bad(self, topic: str, reason: str, detail: str) -> None:
        """Count a dropped message and warn, throttled per (topic, reason)."""
        self.stats.record_bad(topic, reason)
        now = time.monotonic()
        key = (topic, reason)
        if now - self._last_warn.get(key, -1e9) >= self.params.warn_throttle_s:
            self._last_warn[key] = now
            self.get_logger().warning(f"dropped message on {topic} ({reason}): {detail}")

    def _on_info(self, view: str, msg: CameraInfo) -> None:
        problem = camera_info_error(msg, rectify=view in self.pipeline.config.rectify)
        if problem is not None:
            self._bad(self.info_topics[view], *problem)
            return
        self._infos[view] = msg  # latest wins

    def _on_image(self, stream: int, msg: bytes | CompressedImage) -> None:
        view = VIEWS[stream]
        topic = self.image_topics[view]
        now_s = time.monotonic()
        self.stats.record_input(view, now_s)
        try:
            msg, unusable = accept_image(view, msg, self.params.check_image_usable)
        except BadInput as err:
            self._bad(topic, err.reason, str(err))
            return
        if unusable is not None:
            self.stats.count(f"unusable_{view}")
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        arrival = self.router.add(view, stamp_ns, msg, now_s, unusable)
        if arrival.stamp_problem == "backwards":
            self._bad(topic, "stamp_backwards", "stamp older than the previous one "
                      "(bag loop or clock reset): pairing restarted")
        elif arrival.stamp_problem == "repeated":
            self._bad(topic, "stamp_repeated", "same stamp as the previous message")
        self._note_mode(arrival.mode, arrival.reason)
        for work in arrival.work:
            self.queue.put(work, now_s)

    def _note_mode(self, mode: str, reason: str) -> None:
        """Log a change of the camera mode (executor thread: arrivals and diagnostics)."""
        if mode == self._mode:
            return
        if mode == self.tracker.full_mode:
            self.get_logger().info(f"camera mode {self._mode} -> {mode}: all cameras present")
        else:
            shown = [v for v in self.views if mode in ("fused", f"{v}_only")] or ["nothing"]
            self.get_logger().warning(f"camera mode {self._mode} -> {mode} ({reason}): "
                                      f"publishing {', '.join(shown)}")
        self._mode = mode

    # --- worker: prepare, infer, publish (stages.py: one thread, or one per stage) --------------
    def _make_runner(self) -> StageRunner:
        p = self.params
        return StageRunner(
            [Stage("prepare", self._prepare), Stage("infer", self._infer),
             Stage("publish", self._publish)],
            source=self._take, on_error=self._failed, on_step=self.queue.record_step,
            pipelined=p.pipelined, period_s=take_period_s(p),
            newer_waiting=self.queue.newer_waiting)

    def _take(self, timeout_s: float) -> InFlight | None:
        work = self.queue.take(timeout_s=timeout_s)
        # The latest camera_infos when the input is taken (latest wins); a view with none yet
        # is dropped by the pipeline as no_camera_info.
        return None if work is None else InFlight(work, self._infos["thermal"],
                                                  self._infos["rgb"])

    def _failed(self, item: InFlight, stage: str, err: BaseException) -> None:
        if isinstance(err, BadInput):
            topic = (self.image_topics if err.source == "image" else self.info_topics)[err.view]
            self._bad(topic, err.reason, str(err))
            return
        if not self.context.ok():
            return  # Ctrl-C shut the context down while this input was in flight
        self.stats.count("processing_errors")
        self.get_logger().error(f"processing a pair failed ({stage}): {err!r}",
                                throttle_duration_sec=self.params.warn_throttle_s)

    def _wanted(self, output: str) -> dict[str, bool]:
        """view -> whether an on-demand output (points, colored) has a subscriber."""
        return {v: self.pubs[v][output] is not None
                and self.pubs[v][output].get_subscription_count() > 0 for v in self.views}

    def _prepare(self, item: InFlight) -> None:
        start = time.perf_counter()
        item.prepared = self.pipeline.prepare(item.work.frames.get("thermal"),
                                              item.work.frames.get("rgb"), *item.infos)
        self.stats.record_stage("preprocess", (time.perf_counter() - start) * 1e3)

    def _infer(self, item: InFlight) -> None:
        start = time.perf_counter()
        item.net = self.backend.infer_outputs(item.prepared.thermal_input,
                                              item.prepared.rgb_input)
        self.stats.record_stage("inference", (time.perf_counter() - start) * 1e3)

    def _publish(self, item: InFlight) -> None:
        t0 = time.perf_counter()
        outputs = self.pipeline.postprocess(item.prepared, item.net["depth"],
                                            self._wanted("points"), item.net["confidence"],
                                            self._wanted("colored"))
        t1 = time.perf_counter()
        for view, out in outputs.items():
            pubs = self.pubs[view]
            pubs["image"].publish(out.image)
            pubs["info"].publish(out.info)
            for key, msg in (("points", out.cloud), ("confidence", out.confidence),
                             ("colored", out.colored)):
                if msg is not None and pubs[key] is not None:
                    pubs[key].publish(msg)
            if out.colored is not None:
                self.stats.count("colored_published")
        t2 = time.perf_counter()
        self.stats.record_stage("postprocess", (t1 - t0) * 1e3)
        self.stats.record_stage("publish", (t2 - t1) * 1e3)
        now_ns = self.get_clock().now().nanoseconds
        latency_ms = (now_ns - item.work.stamp_ns) / 1e6
        self.stats.record_latency(latency_ms)
        if abs(latency_ms) > CLOCK_MISMATCH_S * 1e3 and not self._clock_warned:
            self._clock_warned = True
            self.get_logger().warning(clock_mismatch_message(
                latency_ms / 1e3, bool(self.get_parameter("use_sim_time").value)))
        if item.work.paired:
            self.stats.count("pairs_processed")
        self.stats.count(f"processed_{item.work.mode}")

    # --- live parameters (executor thread: rclpy's parameter services) --------------------------
    def _changes(self, parameters) -> dict[str, object]:
        """name -> new value of this node's own parameters among `parameters` (not rclpy's
        use_sim_time or qos_overrides)."""
        ours = parameter_defaults()
        return {item.name: item.value for item in parameters if item.name in ours}

    def _check_parameter_changes(self, parameters) -> SetParametersResult:
        """Refuses a change the node cannot run with, naming the parameter (as at start-up)."""
        try:
            new = with_changes(self.params, self._changes(parameters))
            md = self.backend.metadata
            check_against_model(new, new.model_path, md.views, md.confidence_views)
        except ParameterError as err:
            self.get_logger().warning(f"parameter change refused: {err}")
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_parameter_changes(self, parameters) -> None:
        """Applies accepted changes: the worker sees them from its next input on."""
        changes = self._changes(parameters)
        if not changes:
            return
        old, new = self.params, with_changes(self.params, changes)
        self.params = new
        self.pipeline.config = pipeline_config(new, self.views, self.pipeline.config.network_hw)
        self.sync.set_slop(new.sync_slop_s)
        self.runner.period_s = take_period_s(new)
        for name in changes:
            if getattr(old, name) != getattr(new, name):
                self.get_logger().info(f"parameter {name}: {getattr(old, name)!r} -> "
                                       f"{getattr(new, name)!r}")

    # --- diagnostics and shutdown ---------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        sync = self.sync.stats
        for name, value in (("pairs_matched", sync.pairs), ("sync_resets", sync.resets),
                            ("unmatched_thermal", sync.unmatched[0]),
                            ("unmatched_rgb", sync.unmatched[1]),
                            ("pairs_dropped", self.queue.replaced + self.runner.dropped),
                            ("inputs_skipped", self.router.skipped)):
            self.stats.set_count(name, value)
        now_s = time.monotonic()
        mode, reason = self.tracker.mode(now_s)
        self._note_mode(mode, reason)
        snap = self.stats.snapshot(now_s, ModeStatus(mode, reason, self.tracker.full_mode,
                                                     self.tracker.changes))
        status = DiagnosticStatus(
            level=bytes([snap.level]), name=f"{self.get_fully_qualified_name()}: depth fusion",
            message=snap.message, hardware_id=self.backend.metadata.model_id,
            values=[KeyValue(key=k, value=v) for k, v in snap.values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def stop(self) -> None:
        """Stops the worker threads (each after the stage it is in)."""
        self.runner.stop()


def pipeline_config(p: NodeParams, views: tuple[str, ...],
                    network_hw: tuple[int, int]) -> PipelineConfig:
    """The DepthPipeline configuration of the node's parameters (at start and on a change)."""
    return PipelineConfig(
        views=views, network_hw=network_hw, min_depth_m=p.min_depth_m,
        max_depth_m=p.max_depth_m, output_size=p.output_size, points_stride=p.points_stride,
        reuse_buffers=True, rectify=tuple(v for v in VIEWS if getattr(p, f"{v}_rectify")),
        min_confidence=p.min_confidence,
        colored_range_m=(p.colored_min_depth_m, p.colored_max_depth_m))


def take_period_s(p: NodeParams) -> float:
    """The least time between two inputs the worker takes (max_rate_hz; 0 = no cap)."""
    return 1.0 / p.max_rate_hz if p.max_rate_hz > 0 else 0.0


def clock_mismatch_message(offset_s: float, use_sim_time: bool) -> str:
    """The one-time warning when input stamps are `offset_s` seconds behind (> 0) or ahead of
    the node's clock, with the likely cause for its clock source."""
    size = abs(offset_s)
    amount = (f"{size / 3600:.1f} h" if size >= 3600 else f"{size / 60:.1f} min" if size >= 120
              else f"{size:.0f} s")
    where = "behind" if offset_s > 0 else "ahead of"
    if use_sim_time:
        advice = ("use_sim_time is on: is a /clock publisher running (a bag player with "
                  "--clock), and is it the source of these stamps?")
    else:
        advice = ("replaying a bag? Play it with --clock and start the node with "
                  "use_sim_time:=true. Live cameras: are the camera computer's and this one's "
                  "clocks synchronised (chrony/PTP)?")
    return (f"input stamps are {amount} {where} this node's clock "
            f"({'sim' if use_sim_time else 'system'} time): {advice} Until then latency_ms in "
            "/diagnostics is meaningless")


def make_executor(name: str):
    """The rclpy executor named by the `executor` parameter."""
    if name == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor()


def main(args: list[str] | None = None) -> None:
    """Console-script entry point; exits 2 on bad parameters or an unusable model."""
    from depth_fusion_ros.malloc_tuning import keep_large_buffers_in_heap
    from depth_fusion_ros.metadata import ModelMetadataError

    if wants_help(args if args is not None else sys.argv):
        defaults = parameter_defaults()
        summary = (__doc__.split("\n")[0] + "\nParameters marked (live) can be changed while "
                   "the node runs (ros2 param set); the others are read-only once it runs.")
        print(help_text("depth_fusion_node", summary, [
            (name, defaults[name], text + (" (live)" if name in LIVE_PARAMETERS else ""))
            for name, text in PARAMETERS.items()]))
        return
    keep_large_buffers_in_heap()
    rclpy.init(args=args)
    try:
        node = DepthFusionNode(cli_args=args)
    except Exception as err:  # noqa: BLE001 - every start-up failure: a message and exit code 2
        # Ours name the parameter or file; backend libraries raise their own types at load
        # (ImportError without tensorrt/onnxruntime, RuntimeError without CUDA or on warm-up).
        ours = isinstance(err, (ParameterError, ModelMetadataError, ValueError, OSError))
        detail = str(err) if ours else f"{type(err).__name__}: {err}"
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {detail}")
        rclpy.try_shutdown()
        sys.exit(2)
    executor = make_executor(node.params.executor)
    executor.add_node(node)
    try:
        # spin_once in a loop, not spin(): EventsExecutor.spin() of rclpy 7.1.6 was seen here to
        # block without running timers or noticing SIGINT/SIGTERM.
        while rclpy.ok():
            executor.spin_once(timeout_sec=1.0)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
