"""ApproximateTimeSync and PairQueue: jitter, missing frames, loop-back stamps, bounded queues."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from depth_fusion_ros.sync import ApproximateTimeSync, PairQueue

MS = 1_000_000  # ns


def _feed(sync, events):
    """events: (stream, stamp_ns); returns the emitted pairs as (stamp0, stamp1)."""
    pairs = []
    for stream, stamp in events:
        pair = sync.add(stream, stamp, stamp)
        if pair is not None:
            pairs.append(pair)
    return pairs


def test_jittered_streams_pair_one_to_one():
    rng = np.random.default_rng(0)
    period = 66 * MS  # 15 fps
    events = []
    for i in range(50):
        base = 1_000 * MS + i * period
        events.append((0, base + int(rng.integers(-3, 4)) * MS))
        events.append((1, base + int(rng.integers(-3, 4)) * MS))
    events.sort(key=lambda e: e[1])
    sync = ApproximateTimeSync(slop_s=0.01, queue_size=5)
    pairs = _feed(sync, events)
    assert len(pairs) >= 49  # the last may wait for a later message
    assert all(abs(a - b) <= 6 * MS for a, b in pairs)
    assert sync.stats.pairs == len(pairs)
    assert sync.stats.unmatched == [0, 0]


def test_missing_frames_are_counted_not_mispaired():
    sync = ApproximateTimeSync(slop_s=0.01, queue_size=5)
    events = []
    for i in range(10):
        events.append((0, i * 100 * MS))
        if i not in (3, 7):  # RGB frames 3 and 7 lost
            events.append((1, i * 100 * MS + 2 * MS))
    pairs = _feed(sync, events)
    assert [a // (100 * MS) for a, _ in pairs] == [0, 1, 2, 4, 5, 6, 8, 9]
    assert sync.stats.unmatched == [2, 0]


def test_closest_partner_wins_mutually():
    sync = ApproximateTimeSync(slop_s=0.05, queue_size=5)
    # thermal at 0 and 33 ms, RGB at 30 ms: RGB's closest is 33 ms, so 0 ms is dropped.
    pairs = _feed(sync, [(0, 0), (1, 30 * MS), (0, 33 * MS)])
    assert pairs == []  # RGB might still send a stamp nearer 33 ms: wait for its next message
    pairs = _feed(sync, [(1, 100 * MS)])
    assert pairs == [(33 * MS, 30 * MS)]
    assert sync.stats.unmatched == [1, 0]


def test_equal_stamps_pair_without_waiting_for_next_frame():
    sync = ApproximateTimeSync(slop_s=0.01, queue_size=5)
    _feed(sync, [(0, 0), (1, 0), (0, 100 * MS), (1, 100 * MS)])
    # after one gap is known, an exact-stamp pair is emitted as soon as its second half arrives
    assert sync.add(0, 200 * MS, "t") is None
    assert sync.add(1, 200 * MS, "r") == ("t", "r")


def test_loop_back_resets_and_pairs_again():
    sync = ApproximateTimeSync(slop_s=0.01, queue_size=5)
    first = _feed(sync, [(s, i * 100 * MS) for i in range(5) for s in (0, 1)])
    assert sync.add(0, 0, "old") is None  # bag loop: thermal jumps back to 0
    assert sync.stats.resets == 1 and sync.stats.backwards == [1, 0]
    second = _feed(sync, [(s, i * 100 * MS) for i in range(1, 5) for s in (0, 1)])
    assert len(first) >= 4 and len(second) >= 3
    assert all(a == b for a, b in second)


def test_repeated_stamp_dropped_and_queue_bounded():
    sync = ApproximateTimeSync(slop_s=0.01, queue_size=3)
    assert sync.add(0, 5 * MS, 1) is None
    assert sync.add(0, 5 * MS, 2) is None
    assert sync.stats.repeated == [1, 0]
    for i in range(1, 10):  # RGB silent: thermal must not grow without bound
        sync.add(0, 5 * MS + i * 100 * MS, i)
    assert sync.pending() == (3, 0)
    assert sync.stats.overflow == [7, 0]


def test_one_message_completing_two_pairs_returns_both():
    # RGB ran ahead: when thermal 100 ms arrives both (0, 1) and (100, 101) are certain. add()
    # returns only the newest (the older is counted but superseded); add_all returns both, so the
    # node's queue decides (and counts) what is dropped.
    for method in ("add_all", "add"):
        sync = ApproximateTimeSync(slop_s=0.01, queue_size=5)
        add = getattr(sync, method)
        for stream, stamp, item in ((0, 0, "t0"), (1, 1 * MS, "r0"), (1, 101 * MS, "r1")):
            assert add(stream, stamp, item) in ([], None)
        got = add(0, 100 * MS, "t1")
        expected = [("t0", "r0"), ("t1", "r1")]
        assert got == (expected if method == "add_all" else expected[-1])
        assert sync.stats.pairs == 2


def test_pair_queue_works_off_a_burst_while_the_worker_keeps_up():
    queue = PairQueue(max_pending=3)
    assert queue.take(timeout_s=0.0) is None
    for i in range(10):  # 30 Hz input, 9 ms per pair: the worker keeps up
        queue.put(("steady", i), now_s=i / 30)
        assert queue.take(0.0) == ("steady", i)
        queue.record_step(0.009)
    # a burst: three pairs delivered at once after the process was descheduled
    dropped = [queue.put(("burst", i), now_s=10 / 30 + i * 1e-3) for i in range(3)]
    assert dropped == [0, 0, 0] and queue.pending() == 3 and queue.replaced == 0
    assert [queue.take(0.0) for _ in range(3)] == [("burst", 0), ("burst", 1), ("burst", 2)]
    for i in range(5):  # a longer burst than max_pending: the oldest waiting ones go
        queue.put(i, now_s=1.0 + i * 1e-3)
    assert queue.pending() == 3 and queue.replaced == 2 and queue.take(0.0) == 2
    assert not queue.newer_waiting()  # keeping up: pairs waiting are a burst to work off


def test_pair_queue_keeps_only_newest_when_the_worker_is_slower_than_the_input():
    queue = PairQueue(max_pending=3)
    for i in range(10):
        queue.put(i, now_s=i / 30)  # 30 Hz
        queue.record_step(0.2)  # 5 pairs/s: a backlog would grow by 25 pairs every second
    assert queue.pending() == 1 and queue.newer_waiting()  # a pair prepared ahead is stale
    assert queue.replaced == 9 and queue.take(0.0) == 9
    assert not queue.keeping_up() and not queue.newer_waiting()  # nothing waits
    got = []
    consumer = threading.Thread(target=lambda: got.append(queue.take(timeout_s=5.0)))
    consumer.start()
    queue.put("late", now_s=11 / 30)
    consumer.join(5.0)
    assert got == ["late"]
    single = PairQueue(max_pending=1)  # the size-1 slot of old: always only the newest
    assert [single.put(i, now_s=0.0) for i in range(3)] == [0, 1, 1] and single.take(0.0) == 2
    with pytest.raises(ValueError, match="max_pending"):
        PairQueue(max_pending=0)


def test_slop_changed_while_running_applies_to_the_next_messages():
    # the node's live sync_slop_s (ros2 param set): 25 ms apart is too far for 10 ms, then pairs
    sync = ApproximateTimeSync(slop_s=0.01, queue_size=5)
    events = [(0, i * 100 * MS) for i in range(4)] + [(1, i * 100 * MS + 25 * MS) for i in range(4)]
    events.sort(key=lambda e: e[1])
    assert _feed(sync, events[:4]) == []
    sync.set_slop(0.03)
    assert _feed(sync, events[4:]) == [(200 * MS, 225 * MS), (300 * MS, 325 * MS)]
    with pytest.raises(ValueError, match="sync slop must be >= 0 s"):
        sync.set_slop(-0.001)
    assert sync.slop_ns == 30 * MS
