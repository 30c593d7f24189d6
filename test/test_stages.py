"""stages.StageRunner: sequential and pipelined runs, overlap, no backlog, errors, pacing, stop."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from depth_fusion_ros.stages import Handoff, Stage, StageRunner


class Source:
    """Items 0..n-1 on demand (like PairQueue.take), counting how many were taken."""

    def __init__(self, n: int):
        self.items: queue.Queue = queue.Queue()
        for i in range(n):
            self.items.put({"id": i, "trace": []})
        self.taken_s: list[float] = []

    def __call__(self, timeout_s: float):
        try:
            item = self.items.get(timeout=timeout_s)
        except queue.Empty:
            return None
        self.taken_s.append(time.monotonic())
        return item


def _runner(stages, source, pipelined, period_s=0.0):
    done, errors, steps = [], [], []
    runner = StageRunner(stages, source, on_error=lambda item, name, err: errors.append(
        (item["id"], name, str(err))), on_step=steps.append, pipelined=pipelined,
        period_s=period_s)
    return runner, done, errors, steps


def _wait(condition, timeout_s=10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.mark.parametrize("pipelined", [False, True])
def test_every_item_passes_every_stage_in_order(pipelined):
    done = []

    def stage(name):
        return Stage(name, lambda item: item["trace"].append(name))

    last = Stage("c", lambda item: (item["trace"].append("c"), done.append(item)))
    source = Source(20)
    runner, _, errors, steps = _runner([stage("a"), stage("b"), last], source, pipelined)
    runner.start()
    try:
        assert _wait(lambda: len(steps) == 20)
    finally:
        runner.stop()
    assert [item["id"] for item in done] == list(range(20))  # order kept
    assert all(item["trace"] == ["a", "b", "c"] for item in done)
    assert not errors and all(s >= 0.0 for s in steps)
    assert len(runner.threads) == (3 if pipelined else 1)
    assert not any(t.is_alive() for t in runner.threads)


def test_pipelined_stages_overlap_and_sequential_do_not():
    """The infer stage of item 0 can only finish once item 1 was prepared: possible only when
    the stages run on their own threads."""
    for pipelined, expect_overlap in ((True, True), (False, False)):
        prepared = {i: threading.Event() for i in range(3)}
        overlapped = []

        def prepare(item, prepared=prepared):
            prepared[item["id"]].set()

        def infer(item, prepared=prepared, overlapped=overlapped):
            nxt = prepared.get(item["id"] + 1)
            overlapped.append(nxt is not None and nxt.wait(0.5))

        runner, _, errors, steps = _runner(
            [Stage("prepare", prepare), Stage("infer", infer), Stage("publish", lambda i: None)],
            Source(3), pipelined)
        runner.start()
        try:
            assert _wait(lambda r=steps: len(r) == 3)
        finally:
            runner.stop()
        assert overlapped[:2] == [expect_overlap] * 2, (pipelined, overlapped)
        assert not errors


def test_pipelined_runner_never_builds_a_backlog():
    """With a slow last stage the source is read only as fast as that stage works: at most one
    item per stage plus one per slot is in flight."""
    in_flight, peak = [0], [0]
    lock = threading.Lock()
    source = Source(40)

    def take(timeout_s):
        item = source(timeout_s)
        if item is not None:
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
        return item

    def slow_publish(item):
        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1

    runner, _, _, steps = _runner([Stage("prepare", lambda i: None),
                                   Stage("infer", lambda i: None),
                                   Stage("publish", slow_publish)], take, True)
    runner.start()
    try:
        assert _wait(lambda: len(steps) == 40)
    finally:
        runner.stop()
    assert peak[0] <= 5, peak  # 3 stages + 2 slots
    # The step reported is the slowest stage's time (what bounds the rate), not the sum.
    assert min(steps) >= 0.019 and max(steps) < 0.5


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_failing_stage_drops_the_item_and_the_runner_goes_on(pipelined):
    done = []

    def infer(item):
        if item["id"] % 3 == 1:
            raise ValueError(f"bad input {item['id']}")

    runner, _, errors, steps = _runner(
        [Stage("prepare", lambda i: None), Stage("infer", infer),
         Stage("publish", lambda item: done.append(item["id"]))], Source(9), pipelined)
    runner.start()
    try:
        assert _wait(lambda: len(steps) == 9)
    finally:
        runner.stop()
    assert done == [0, 2, 3, 5, 6, 8]
    assert errors == [(i, "infer", f"bad input {i}") for i in (1, 4, 7)]


@pytest.mark.parametrize("pipelined", [False, True])
def test_period_paces_the_inputs_taken(pipelined):
    source = Source(5)
    runner, _, _, steps = _runner([Stage("a", lambda i: None), Stage("b", lambda i: None)],
                                  source, pipelined, period_s=0.05)
    runner.start()
    try:
        assert _wait(lambda: len(steps) == 5)
    finally:
        runner.stop()
    gaps = [b - a for a, b in zip(source.taken_s, source.taken_s[1:], strict=False)]
    assert min(gaps) >= 0.045, gaps
    assert all(s >= 0.05 for s in steps)  # never less than the period


def test_stop_returns_while_a_stage_waits_for_room():
    release = threading.Event()
    runner, _, errors, _ = _runner(
        [Stage("prepare", lambda i: None), Stage("infer", lambda i: None),
         Stage("publish", lambda i: release.wait(5.0))], Source(10), True)
    runner.start()
    time.sleep(0.2)  # publish is blocked on item 0, the stages before it wait for room
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    # The waiting stages leave at once; the busy one after the stage it is in.
    assert _wait(lambda: not any(t.is_alive() for t in runner.threads[:2]), 2.0)
    assert runner.threads[2].is_alive()
    release.set()
    stopper.join(5.0)
    assert not any(t.is_alive() for t in runner.threads) and not errors


def test_handoff_holds_one_item():
    slot, stop = Handoff(), threading.Event()
    assert slot.take_timed(0.01) == (None, 0.0)
    assert slot.put("a", stop)
    stop.set()
    assert not slot.put("b", stop)  # full, and stopping: not placed
    assert not slot.wait_empty(stop)
    assert slot.take_timed(0.01)[0] == "a" and slot.take_timed(0.01) == (None, 0.0)


def test_runner_needs_a_stage():
    with pytest.raises(ValueError, match="at least one stage"):
        StageRunner([], lambda t: None, lambda *a: None, lambda s: None, pipelined=True)


def test_an_input_prepared_ahead_is_replaced_by_a_newer_one_when_overloaded():
    """Pipelined and not keeping up: the input prepared while inference was busy is dropped
    for the newer one waiting (latency one step, not two); one inference waited for is not."""
    feed: queue.Queue = queue.Queue()
    started0, release0 = threading.Event(), threading.Event()
    prepared = {i: threading.Event() for i in range(3)}
    done, dropped = [], []

    def source(timeout_s):
        try:
            return feed.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def infer(item):
        if item["id"] == 0:
            started0.set()
            assert release0.wait(5.0)

    runner = StageRunner(
        [Stage("prepare", lambda item: prepared[item["id"]].set()), Stage("infer", infer),
         Stage("publish", lambda item: done.append(item["id"]))], source,
        on_error=lambda *a: None, on_step=lambda s: None, pipelined=True,
        newer_waiting=lambda: not feed.empty(), on_dropped=lambda item: dropped.append(item["id"]))
    runner.start()
    try:
        feed.put({"id": 0})
        assert started0.wait(5.0)
        feed.put({"id": 1})
        assert prepared[1].wait(5.0)  # prepared ahead, waiting in the slot
        feed.put({"id": 2})  # newer; the prepare stage has no room for it yet
        time.sleep(0.05)
        release0.set()
        assert _wait(lambda: done == [0, 2])
    finally:
        runner.stop()
    assert dropped == [1] and runner.dropped == 1


def test_replacing_never_starves_the_stage():
    """Even if a newer input always waits, an input the stage waited for goes through."""
    done, dropped = [], []

    def slow(item):
        time.sleep(0.01)

    runner = StageRunner(
        [Stage("prepare", lambda i: None), Stage("infer", slow),
         Stage("publish", lambda item: done.append(item["id"]))], Source(20),
        on_error=lambda *a: None, on_step=lambda s: None, pipelined=True,
        newer_waiting=lambda: True, on_dropped=lambda item: dropped.append(item["id"]))
    runner.start()
    try:
        assert _wait(lambda: len(done) + len(dropped) == 20)
    finally:
        runner.stop()
    assert len(done) >= 9 and sorted(done + dropped) == list(range(20))
