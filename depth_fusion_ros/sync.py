"""Approximate-time pairing of two message streams (thermal and RGB) by header stamp.

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

STREAMS = (0, 1)


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

    Usage: `pair = sync.add(stream, stamp_ns, item)`; `pair` is `(item0, item1)` or None.
    Not thread-safe: call from one thread (the node's subscription callbacks do).
    """

    def __init__(self, slop_s: float, queue_size: int):
        if slop_s < 0.0:
            raise ValueError(f"sync slop must be >= 0 s, got {slop_s}")
        if queue_size < 1:
            raise ValueError(f"sync queue size must be >= 1, got {queue_size}")
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = int(queue_size)
        self.stats = SyncStats()
        self._queues: tuple[deque, deque] = (deque(), deque())  # (stamp_ns, item), oldest first
        self._last_ns: list[int | None] = [None, None]
        self._min_gap_ns: list[int | None] = [None, None]  # smallest stamp gap seen per stream

    def reset(self) -> None:
        """Forget everything queued and the last stamps (counted as dropped-unmatched)."""
        for stream in STREAMS:
            self.stats.unmatched[stream] += len(self._queues[stream])
            self._queues[stream].clear()
        self._last_ns = [None, None]

    def add(self, stream: int, stamp_ns: int, item: Any) -> tuple[Any, Any] | None:
        """Offer one message; returns the newest completed pair (item0, item1), if any.

        Returns the latest pair only: if one message completes several pairs (rare, after a gap)
        the older ones are counted as pairs but superseded, exactly what a never-backlog node wants.
        """
        if stream not in STREAMS:
            raise ValueError(f"stream must be 0 or 1, got {stream}")
        last = self._last_ns[stream]
        if last is not None and stamp_ns < last:
            self.stats.backwards[stream] += 1
            self.stats.resets += 1
            self.reset()
            return None
        if last is not None and stamp_ns == last:
            self.stats.repeated[stream] += 1
            return None
        if last is not None:
            gap_ns = stamp_ns - last
            min_gap = self._min_gap_ns[stream]
            self._min_gap_ns[stream] = gap_ns if min_gap is None else min(min_gap, gap_ns)
        self._last_ns[stream] = stamp_ns
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

    def _match(self) -> tuple[Any, Any] | None:
        latest = None
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
            latest = (item_old, item_other) if older == 0 else (item_other, item_old)
        return latest

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


class LatestSlot:
    """A size-1 hand-over between the subscription thread and the inference worker.

    `put` never blocks and replaces a waiting item (counted in `replaced`): when inference is
    slower than the cameras only the newest pair waits, so latency stays bounded (no backlog).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self.replaced = 0

    def put(self, item: Any) -> bool:
        """Stores item; returns True if it replaced one that was never taken."""
        with self._cond:
            replaced = self._full
            self.replaced += int(replaced)
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> Any:
        """Waits up to timeout_s for an item and removes it; None if none came."""
        with self._cond:
            if not self._full and not self._cond.wait_for(lambda: self._full, timeout_s):
                return None
            item, self._item, self._full = self._item, None, False
            return item
