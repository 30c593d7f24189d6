"""`depth_fusion_bag_player`: publish a rosbag2 through rclpy, for machines without rosbag2.

    depth_fusion_bag_player BAG [--rate R] [--loop] [--clock] [--topics T ...]
        [--start-delay S] [--wait-for-subscribers N] [--wait-timeout S]

On a ROS 2 machine `ros2 bag play BAG --clock` is the normal path; this player exists for pip-only
rclpy installs (like CI). Every topic is published reliable (latched ones also transient-local),
whatever QoS the bag recorded: a file replay has no reason to drop anything, a reliable writer
reaches best-effort subscribers too, and depth_fusion_node's input_qos auto then subscribes
reliable, so at --rate 1.0 every frame reaches the node (drops are then the node's own, counted in
its pairs_dropped). With --wait-for-subscribers the player waits for its consumers before playing,
for their acknowledgement of each topic's first message (discovery is complete both ways) and,
at the end, of the last ones, so the first and last frames are not lost either. It reads the bag with `rosbags` and publishes each message's recorded
CDR bytes unchanged (`Publisher.publish(bytes)`, rclpy's serialized-message path), so nothing is
deserialised in Python. Timing follows the recorded receive times divided by `--rate`; with
`--clock` a rosgraph_msgs/Clock carrying the bag time is published on /clock before each message.
Topics recorded with a transient-local offered QoS (/tf_static) are re-published latched, as
`ros2 bag play` does. A topic whose message package is not importable is skipped with a warning.

Before anything is published the bag is checked (`bag.integrity.check_bag`): metadata.yaml must
parse and list storage files that exist, and each mcap file must be whole (both magics, the
footer) and pass the CRCs it carries: every chunk's `uncompressed_crc`, the Data End record's
`data_section_crc` and the footer's `summary_crc` (a CRC of 0 means "not recorded" in the MCAP
format: `ms2_to_bag` records all three, other writers may leave some at 0, and damage there goes
unseen). This reads each mcap file once. A bag that fails exits with code 2 and a message naming the file and what is
damaged; a sqlite3 bag has no checksums, only its reader's own checks (also exit 2).
"""
from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader, ReaderError
from tqdm import tqdm

from depth_fusion_ros.bag.integrity import BagFileError, check_bag

NS_PER_S = 1_000_000_000
CLOCK_HZ = 40.0  # /clock tick rate between messages (ros2 bag play's default)


@dataclass(frozen=True)
class PlayerConfig:
    bag: Path
    rate: float = 1.0
    loop: bool = False
    clock: bool = False
    topics: tuple[str, ...] = ()
    start_delay_s: float = 0.0
    wait_for_subscribers: int = 0
    wait_timeout_s: float = 10.0
    progress: bool = True


def message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Name', or None if its package is not installed."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def _is_latched(connection) -> bool:
    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    return any(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)


def _qos_for(connection):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    if _is_latched(connection):
        return QoSProfile(depth=max(1, connection.msgcount), reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    # Reliable reaches both reliable and best-effort (sensor-data QoS) subscribers.
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


class BagPlayer:
    """Publishes one opened bag's connections with the recorded timing."""

    def __init__(self, node, reader: Reader, cfg: PlayerConfig) -> None:
        self.node, self.reader, self.cfg = node, reader, cfg
        self.log = node.get_logger()
        self.publishers: dict[int, object] = {}  # connection id -> publisher
        by_topic = {}
        for conn in reader.connections:
            if cfg.topics and conn.topic not in cfg.topics:
                continue
            cls = message_class(conn.msgtype)
            if cls is None:
                self.log.warning(f"skipping {conn.topic}: the Python package for {conn.msgtype} "
                                 f"is not installed (install it, or use `ros2 bag play`)")
                continue
            if conn.topic not in by_topic:
                by_topic[conn.topic] = node.create_publisher(cls, conn.topic, _qos_for(conn))
            self.publishers[conn.id] = by_topic[conn.topic]
        missing = set(cfg.topics) - {c.topic for c in reader.connections}
        if missing:
            raise ValueError(f"--topics {sorted(missing)} not in {cfg.bag}; it has "
                             f"{sorted({c.topic for c in reader.connections})}")
        self.clock_pub = None
        if cfg.clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", 10)
        self.connections = [c for c in reader.connections if c.id in self.publishers]

    def wait_for_subscribers(self) -> None:
        """Block until every played topic has N subscribers (or the timeout passes).

        Latched topics (/tf_static) are not waited for: a late subscriber still gets them. A
        subscriber that matches its QoS to the publishers it finds (depth_fusion_node's
        input_qos auto) subscribes only once these publishers exist, which they do from here on.
        """
        need, deadline = self.cfg.wait_for_subscribers, time.monotonic() + self.cfg.wait_timeout_s
        pubs = {c.topic: self.publishers[c.id] for c in self.connections if not _is_latched(c)}
        short = []
        while need > 0 and time.monotonic() < deadline:
            short = sorted(t for t, p in pubs.items() if p.get_subscription_count() < need)
            if not short:
                return
            time.sleep(0.05)
        if need > 0:
            self.log.warning(f"fewer than {need} subscribers on {short} after "
                             f"{self.cfg.wait_timeout_s:.0f} s; playing anyway")

    def _publish_clock(self, stamp_ns: int) -> None:
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), NS_PER_S)
        self.clock_pub.publish(msg)

    def play_once(self, bar) -> int:
        """Publish the bag once with recorded timing / rate; returns messages published.

        With --clock, /clock also ticks at CLOCK_HZ (bag time) while waiting between messages,
        as `ros2 bag play --clock` does, so sim time flows smoothly.
        """
        start_ns = self.reader.start_time
        wall0 = time.perf_counter()
        count = 0
        unconfirmed = set(self.publishers.values()) if self.cfg.wait_for_subscribers else set()
        for conn, stamp_ns, data in self.reader.messages(connections=self.connections):
            due_s = (stamp_ns - start_ns) / NS_PER_S / self.cfg.rate
            while (wait_s := due_s - (time.perf_counter() - wall0)) > 0:
                if self.clock_pub is None:
                    time.sleep(wait_s)
                    break
                time.sleep(min(wait_s, 1.0 / CLOCK_HZ))
                elapsed_s = min(time.perf_counter() - wall0, due_s)
                self._publish_clock(start_ns + int(elapsed_s * self.cfg.rate * NS_PER_S))
            if self.clock_pub is not None:
                self._publish_clock(stamp_ns)
            publisher = self.publishers[conn.id]
            publisher.publish(bytes(data))
            if publisher in unconfirmed:  # the recorded timing resumes after the wait
                unconfirmed.discard(publisher)
                wall0 += self._confirm_first(publisher)
            count += 1
            bar.update(1)
        return count

    def _confirm_first(self, publisher) -> float:
        """Wait until the subscribers acknowledged a topic's first message; returns the seconds.

        A subscriber counted by get_subscription_count() has been matched by this writer, but its
        reader may not have matched the writer back yet (discovery is two-sided) and then ignores
        what it is sent; reliable writers resend once it has. The acknowledgement of the first
        message proves the match both ways, so no later frame is lost to discovery.
        """
        from rclpy.duration import Duration

        start = time.perf_counter()
        if not publisher.wait_for_all_acked(Duration(seconds=self.cfg.wait_timeout_s)):
            self.log.warning(f"{publisher.topic_name}: the first message was not acknowledged "
                             f"within {self.cfg.wait_timeout_s:.0f} s; playing on")
        return time.perf_counter() - start

    def wait_for_acks(self, timeout_s: float = 5.0) -> None:
        """Before exiting: let reliable subscribers acknowledge (else the last messages die)."""
        from rclpy.duration import Duration

        for pub in set(self.publishers.values()):
            pub.wait_for_all_acked(Duration(seconds=timeout_s))

    def play(self) -> int:
        """Play once or until interrupted (--loop); returns the number of messages published."""
        total = sum(c.msgcount for c in self.connections)
        published = 0
        with tqdm(total=None if self.cfg.loop else total, unit="msg",
                  desc=f"playing {self.cfg.bag.name}", disable=not self.cfg.progress) as bar:
            while True:
                published += self.play_once(bar)
                if not self.cfg.loop:
                    return published


def _parse_args(argv: list[str] | None) -> PlayerConfig:
    parser = argparse.ArgumentParser(prog="depth_fusion_bag_player",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("bag", type=Path, help="rosbag2 folder (mcap or sqlite3)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--loop", action="store_true", help="repeat until interrupted")
    parser.add_argument("--clock", action="store_true", help="publish the bag time on /clock")
    parser.add_argument("--topics", nargs="+", default=(), help="only these topics")
    parser.add_argument("--start-delay", type=float, default=0.0, metavar="S",
                        help="seconds to wait before playing (after --wait-for-subscribers)")
    parser.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                        help="before playing, wait until every played topic has N "
                             "subscribers (combine with --topics)")
    parser.add_argument("--wait-timeout", type=float, default=10.0, metavar="S")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, _ros_args = parser.parse_known_args(argv)
    if args.rate <= 0:
        parser.error(f"--rate must be > 0, got {args.rate}")
    return PlayerConfig(bag=args.bag, rate=args.rate, loop=args.loop, clock=args.clock,
                        topics=tuple(args.topics), start_delay_s=args.start_delay,
                        wait_for_subscribers=args.wait_for_subscribers,
                        wait_timeout_s=args.wait_timeout, progress=not args.quiet)


def _play(node, cfg: PlayerConfig) -> None:
    """Open the (checked) bag and play it through `node`'s publishers."""
    with Reader(cfg.bag) as reader:
        player = BagPlayer(node, reader, cfg)
        player.wait_for_subscribers()
        # A writer may see a reader before the reader has matched it back; data sent in that
        # window is lost, so give discovery a moment (and the user's --start-delay).
        time.sleep(cfg.start_delay_s + (0.5 if cfg.wait_for_subscribers else 0.0))
        count = player.play()
        node.get_logger().info(f"played {count} messages from {cfg.bag}")
        player.wait_for_acks()


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 played (or stopped with Ctrl-C), 2 bad arguments or a bad / damaged bag."""
    import rclpy

    argv = sys.argv[1:] if argv is None else argv
    cfg = _parse_args(argv)
    try:
        check_bag(cfg.bag)  # before rclpy: a bad bag fails fast, and before anything is published
    except BagFileError as err:
        print(f"depth_fusion_bag_player: error: {err}", file=sys.stderr)
        return 2
    rclpy.init(args=["depth_fusion_bag_player", *argv])
    node = rclpy.create_node("depth_fusion_bag_player")
    code = 0
    try:
        _play(node, cfg)
    except ValueError as err:
        print(f"depth_fusion_bag_player: error: {err}", file=sys.stderr)
        code = 2
    except (ReaderError, sqlite3.DatabaseError) as err:
        detail = " ".join(str(err).split())
        print(f"depth_fusion_bag_player: error: cannot read bag {cfg.bag} "
              f"({type(err).__name__}: {detail}); re-create or restore it", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 0
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
