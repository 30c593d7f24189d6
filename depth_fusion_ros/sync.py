"""Approximate-time pairing of two message streams (thermal and RGB) by header stamp, the
single-camera routing around it (InputRouter), and the hand-over to the inference worker
(PairQueue).

message_filters is not installable in a pip ROS 2 environment, so this is our own two-stream
version of its ApproximateTime policy idea: a pair is emitted only once it is certain that no
later message can be a closer partner, which for per-stream monotonic stamps means the other
stream has already delivered a message at or after the candidate's stamp. Plain Python, no rclpy.

Rules:
- A message pairs with the partner whose stamp is closest, if |dt| <= slop_s, and only if it is
  also that partner's closest message (mutual best match); losers are dropped as unmatched.
- Queues are bounded (queue_size per stream); overflow drops the oldest as unmatched.
- A stamp older than the stream's previous one (a bag loop or a clock reset) clears both queues,
  is counted as a reset, and the offending message is dropped; the next messages pair afresh.
- A repeated stamp on one stream is dropped (counted) without resetting.
- Like message_filters' inter-message lower bound, the smallest gap seen so far on a stream lets
  a pair be emitted without waiting a whole frame for the next message (hardware-synced cameras
  with near-equal stamps then pair at once).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from depth_fusion_ros.degraded import ModeTracker

STREAMS = (0, 1)
CAMERAS = ("thermal", "rgb")  # stream 0, stream 1


@dataclass
class SyncStats:
    """Counters of what the synchroniser did with every message it was given."""

    pairs: int = 0
    unmatched: list[int] = field(default_factory=lambda: [0, 0])  # per stream, incl. overflow
    overflow: list[int] = field(default_factory=lambda: [0, 0])
    backwards: list[int] = field(default_factory=lambda: [0, 0])  # stamps going backwards
    repeated: list[int] = field(default_factory=lambda: [0, 0])
    resets: int = 0


class ApproximateTimeSync:
    """Pairs items from stream 0 and stream 1 whose stamps are closest within a slop.

    Usage: `pairs = sync.add_all(stream, stamp_ns, item)`: the pairs `(item0, item1)` this
    message completed, oldest first (usually none or one); `sync.add` returns only the newest.
    Not thread-safe: call from one thread (the node's subscription callbacks do).
    """

    def __init__(self, slop_s: float, queue_size: int):
        if queue_size < 1:
            raise ValueError(f"sync queue size must be >= 1, got {queue_size}")
        self.set_slop(slop_s)
        self.queue_size = int(queue_size)
        self.stats = SyncStats()
        self._queues: tuple[deque, deque] = (deque(), deque())  # (stamp_ns, item), oldest first
        self._last_ns: list[int | None] = [None, None]
        self._min_gap_ns: list[int | None] = [None, None]  # smallest stamp gap seen per stream

    def set_slop(self, slop_s: float) -> None:
        """The largest stamp difference that pairs, from the next message on (queued messages
        stay and pair under the new slop)."""
        if slop_s < 0.0:
            raise ValueError(f"sync slop must be >= 0 s, got {slop_s}")
        self.slop_ns = int(round(slop_s * 1e9))

    def reset(self) -> None:
        """Forget everything queued and the last stamps (counted as dropped-unmatched)."""
        self.drop_pending()
        self._last_ns = [None, None]

    def drop_pending(self) -> None:
        """Forget the messages waiting for a partner (counted as dropped-unmatched); the last
        stamps stay, so stamps going backwards are still noticed."""
        for stream in STREAMS:
            self.stats.unmatched[stream] += len(self._queues[stream])
            self._queues[stream].clear()

    def add(self, stream: int, stamp_ns: int, item: Any) -> tuple[Any, Any] | None:
        """Offer one message; returns the newest completed pair (item0, item1), if any.

        If one message completes several pairs (rare, after a gap) the older ones are counted as
        pairs but superseded; use add_all to get them all.
        """
        pairs = self.add_all(stream, stamp_ns, item)
        return pairs[-1] if pairs else None

    def add_all(self, stream: int, stamp_ns: int, item: Any) -> list[tuple[Any, Any]]:
        """Offer one message; returns every pair it completed, oldest first.

        The node hands each to its PairQueue, whose policy decides what is dropped (and counts
        it), so a frame that paired is never lost silently.
        """
        if self.check_order(stream, stamp_ns) is not None:
            return []
        return self.add_checked(stream, stamp_ns, item)

    def check_order(self, stream: int, stamp_ns: int) -> str | None:
        """The stamp rules alone: "backwards" (both queues cleared, counted as a reset),
        "repeated" (counted), or None: the stamp is now the stream's last, and the message may be
        queued with add_checked, or used without pairing (the node's single-camera mode)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be 0 or 1, got {stream}")
        last = self._last_ns[stream]
        if last is not None and stamp_ns < last:
            self.stats.backwards[stream] += 1
            self.stats.resets += 1
            self.reset()
            return "backwards"
        if last is not None and stamp_ns == last:
            self.stats.repeated[stream] += 1
            return "repeated"
        if last is not None:
            gap_ns = stamp_ns - last
            min_gap = self._min_gap_ns[stream]
            self._min_gap_ns[stream] = gap_ns if min_gap is None else min(min_gap, gap_ns)
        self._last_ns[stream] = stamp_ns
        return None

    def add_checked(self, stream: int, stamp_ns: int, item: Any) -> list[tuple[Any, Any]]:
        """Queue a message whose stamp check_order accepted; returns the pairs it completed."""
        queue = self._queues[stream]
        queue.append((stamp_ns, item))
        if len(queue) > self.queue_size:
            queue.popleft()
            self.stats.overflow[stream] += 1
            self.stats.unmatched[stream] += 1
        return self._match()

    def pending(self) -> tuple[int, int]:
        """Number of messages waiting in each queue."""
        return len(self._queues[0]), len(self._queues[1])

    def _match(self) -> list[tuple[Any, Any]]:
        pairs = []
        while self._queues[0] and self._queues[1]:
            # The older head can only pair with the other stream's head: everything else there is
            # later still, and older partners are already gone.
            older = 0 if self._queues[0][0][0] <= self._queues[1][0][0] else 1
            other = 1 - older
            t_old = self._queues[older][0][0]
            t_partner = self._queues[other][0][0]
            if t_partner - t_old > self.slop_ns:
                self._drop_head(older)
                continue
            best = self._best_index(older, t_partner)
            if best is None:
                break  # the older stream may still deliver a closer partner: wait
            if best > 0:
                for _ in range(best):
                    self._drop_head(older)
                continue  # re-evaluate: the new head may now be the other stream's
            item_old = self._queues[older].popleft()[1]
            item_other = self._queues[other].popleft()[1]
            self.stats.pairs += 1
            pairs.append((item_old, item_other) if older == 0 else (item_other, item_old))
        return pairs

    def _best_index(self, stream: int, target_ns: int) -> int | None:
        """Index of the message in `stream` closest to target_ns, or None if not yet decidable."""
        queue = self._queues[stream]
        best_index, best_dt = 0, abs(queue[0][0] - target_ns)
        for index, (stamp_ns, _) in enumerate(queue):
            dt = abs(stamp_ns - target_ns)
            if dt < best_dt:
                best_index, best_dt = index, dt
            if stamp_ns >= target_ns:
                return best_index  # later messages are further away still
        min_gap = self._min_gap_ns[stream]
        if min_gap is not None and queue[-1][0] + min_gap - target_ns >= best_dt:
            return best_index  # the next message cannot arrive early enough to be closer
        return None

    def _drop_head(self, stream: int) -> None:
        self._queues[stream].popleft()
        self.stats.unmatched[stream] += 1


@dataclass(frozen=True)
class Work:
    """One input for the worker: the usable images of a pair, or one camera's image alone."""

    frames: dict[str, Any]  # camera ("thermal" | "rgb") -> message; only usable images
    paired: bool  # came out of the pairing (a pair with an unusable image goes on without it)

    @property
    def mode(self) -> str:
        """The mode this input runs in: fused, thermal_only or rgb_only."""
        return "fused" if len(self.frames) == 2 else f"{next(iter(self.frames))}_only"

    @property
    def stamp_ns(self) -> int:
        """Header stamp of the first image (thermal if present): what the latency is timed from."""
        stamp = next(iter(self.frames.values())).header.stamp
        return stamp.sec * 1_000_000_000 + stamp.nanosec


@dataclass
class Arrival:
    """What became of one arriving image."""

    work: list[Work]  # for the worker, oldest first (usually none or one)
    mode: str  # the mode after this image (degraded.ModeTracker)
    reason: str
    stamp_problem: str | None = None  # "backwards" | "repeated": the image was dropped


class InputRouter:
    """Where each arriving image goes: the node's single-camera mode (DESIGN.md section 2).

    The mode is the tracker's, decided on every arrival, so the first image after the other
    camera went stale already runs alone.
    - fused: images are paired (ApproximateTimeSync); an unusable image of a pair is left out
      and the pair goes on as the other camera's image.
    - thermal_only / rgb_only: the surviving camera's usable images go on one by one, unpaired;
      the missing camera's (unusable) images are dropped. Entering it drops the images waiting
      for a partner (counted unmatched): they are up to stale_timeout_s old, and a partner
      arriving late could otherwise complete a pair older than the single images already sent.
    - none: nothing goes on.
    Every image passes the sync's stamp rules (backwards, repeated) in every mode; an input with
    no usable image of a published view is counted in `skipped`. Not thread-safe (one thread).
    """

    def __init__(self, sync: ApproximateTimeSync, tracker: ModeTracker,
                 published: tuple[str, ...]):
        self.sync, self.tracker = sync, tracker
        self.published = frozenset(published)  # cameras whose view is published
        self.skipped = 0

    def add(self, camera: str, stamp_ns: int, item: Any, now_s: float,
            unusable: str | None = None) -> Arrival:
        """One image of `camera` arrived at now_s (monotonic); `unusable`: why it carries
        nothing (degraded.image_usability), None if usable or not checked."""
        problem = self.sync.check_order(CAMERAS.index(camera), stamp_ns)
        if problem is not None:
            return Arrival([], *self.tracker.mode(now_s), problem)
        self.tracker.record(camera, now_s, unusable)
        mode, reason = self.tracker.mode(now_s)
        if mode == "fused":
            pairs = self.sync.add_checked(CAMERAS.index(camera), stamp_ns, (item, unusable))
            work = [self._work(dict(zip(CAMERAS, pair, strict=True)), True) for pair in pairs]
        else:
            self.sync.drop_pending()
            work = ([self._work({camera: (item, unusable)}, False)]
                    if mode == f"{camera}_only" else [])
        return Arrival([w for w in work if w is not None], mode, reason)

    def _work(self, frames: dict[str, tuple[Any, str | None]], paired: bool) -> Work | None:
        usable = {cam: item for cam, (item, why) in frames.items() if why is None}
        if not usable.keys() & self.published:
            self.skipped += 1
            return None
        return Work(usable, paired)


class PairQueue:
    """Hand-over from the subscription thread to the inference worker: bursts absorbed, no backlog.

    DDS delivers camera images in bursts when a process was briefly descheduled, so two pairs can
    complete within a millisecond although the cameras run at a steady rate. While the worker keeps
    up with the input (its mean time per pair below the mean time between pairs) up to
    `max_pending` pairs wait, so a burst is worked off instead of being dropped. When it does not
    keep up (a model slower than the cameras, or a max_rate_hz cap) only the newest pair waits, as
    DESIGN.md asks: latency stays bounded by one step, and every replaced pair is counted in
    `replaced`. Means are over the last `window` pairs; nothing is dropped before they exist.
    """

    def __init__(self, max_pending: int = 3, window: int = 30):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = int(max_pending)
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._puts_s: deque = deque(maxlen=window)  # arrival times of the last pairs
        self._steps_s: deque = deque(maxlen=window)  # worker seconds per pair
        self.replaced = 0

    def keeping_up(self) -> bool:
        """Whether the worker's mean step is shorter than the mean time between pairs."""
        if len(self._puts_s) < 2 or not self._steps_s:
            return True
        period_s = (self._puts_s[-1] - self._puts_s[0]) / (len(self._puts_s) - 1)
        return sum(self._steps_s) / len(self._steps_s) < period_s

    def put(self, item: Any, now_s: float) -> int:
        """Queues item (arrived at monotonic now_s); returns how many waiting pairs it replaced."""
        with self._cond:
            self._puts_s.append(now_s)
            self._items.append(item)
            limit = self.max_pending if self.keeping_up() else 1
            dropped = 0
            while len(self._items) > limit:
                self._items.popleft()
                dropped += 1
            self.replaced += dropped
            self._cond.notify()
            return dropped

    def take(self, timeout_s: float | None = None) -> Any:
        """Waits up to timeout_s for the oldest waiting item and removes it; None if none came."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout_s):
                return None
            return self._items.popleft()

    def newer_waiting(self) -> bool:
        """Whether an input waits while the worker does not keep up (only the newest may wait):
        an input the worker prepared ahead is then older than need be."""
        with self._cond:
            return bool(self._items) and not self.keeping_up()

    def record_step(self, seconds: float) -> None:
        """The worker's time for one pair (processing, or the max_rate_hz period if longer)."""
        with self._cond:
            self._steps_s.append(float(seconds))

    def pending(self) -> int:
        with self._cond:
            return len(self._items)
