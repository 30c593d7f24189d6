"""The worker side of the node: each input through its stages, one after the other or overlapped.

Stages (node.py): prepare (decode, rectify, preprocess), infer, publish (postprocess, publish).
- Sequential (`pipelined: false`): one thread runs all stages of an input before taking the next.
- Pipelined (`pipelined: true`): one thread per stage and a one-item slot between two stages, so
  input N+1 is prepared while N is inferred and N-1 is published (on a GPU the device no longer
  idles during the CPU stages; on the CPU, numpy, OpenCV and ONNX Runtime release the GIL).

No backlog in either mode: a stage takes its next input only when its output slot is empty, so
at most one input waits between two stages, and the newest-pair policy stays where it is, in the
input queue (sync.PairQueue). Pipelined, the first stage prepares an input while the second is
still busy; when the worker does not keep up, that input would wait up to a whole step there and
then take another: latency of two steps, not one. So the second stage, on taking a prepared
input, asks `newer_waiting()`: if a newer input is waiting (and the queue's policy is newest
only), the prepared one is dropped (counted in `dropped`, which the node adds to the queue's
drops; `on_dropped` sees it) and the newer one prepared instead. Per input the runner reports
one step time to the queue's keeping-up estimate: the sum of the stage times when sequential,
the longest stage when pipelined (what bounds the rate), never less than the max_rate_hz
period.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_EMPTY = object()
POLL_S = 0.1  # how often a waiting thread looks at the stop event


class Handoff:
    """A one-item slot between two stage threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = _EMPTY
        self._put_s = 0.0

    def _wait_empty_locked(self, stop: threading.Event) -> bool:
        while self._item is not _EMPTY:
            if stop.is_set():
                return False
            self._cond.wait(POLL_S)
        return not stop.is_set()

    def wait_empty(self, stop: threading.Event) -> bool:
        """Blocks until the slot is empty; False if `stop` was set first."""
        with self._cond:
            return self._wait_empty_locked(stop)

    def put(self, item: Any, stop: threading.Event) -> bool:
        """Places item once the slot is empty; False (item not placed) if `stop` was set first."""
        with self._cond:
            if not self._wait_empty_locked(stop):
                return False
            self._item, self._put_s = item, time.monotonic()
            self._cond.notify_all()
            return True

    def take_timed(self, timeout_s: float) -> tuple[Any, float]:
        """(item removed from the slot, monotonic time it was put), or (None, 0.0) if none came
        within timeout_s."""
        with self._cond:
            if self._item is _EMPTY and not self._cond.wait_for(
                    lambda: self._item is not _EMPTY, timeout_s):
                return None, 0.0
            item, self._item = self._item, _EMPTY
            self._cond.notify_all()
            return item, self._put_s


@dataclass(frozen=True)
class Stage:
    """One step of the work on an input: run(item) fills in the item (or raises)."""

    name: str
    run: Callable[[Any], None]


class StageRunner:
    """Runs inputs from `source` through `stages` on one thread or one thread per stage.

    Args:
        stages: in order; each run(item) gets the item the previous one filled in.
        source: source(timeout_s) -> next input or None (sync.PairQueue.take).
        on_error: on_error(item, stage name, exception) for an input a stage raised on; the
            input is dropped, the thread goes on with the next one.
        on_step: on_step(seconds) once per input that left the stages (done or dropped).
        pipelined: one thread per stage instead of one for all.
        period_s: the least time between two inputs taken (max_rate_hz), 0 for none.
        name: thread name prefix.
        newer_waiting: pipelined, asked by the second stage on taking a prepared input: whether
            a newer input waits in the source and should replace it (PairQueue.newer_waiting).
        on_dropped: on_dropped(item) for a prepared input replaced that way.
    Attributes:
        dropped: prepared inputs replaced by newer ones.
    """

    def __init__(self, stages: list[Stage], source: Callable[[float], Any],
                 on_error: Callable[[Any, str, BaseException], None],
                 on_step: Callable[[float], None], pipelined: bool, period_s: float = 0.0,
                 name: str = "depth_fusion", newer_waiting: Callable[[], bool] | None = None,
                 on_dropped: Callable[[Any], None] | None = None):
        if not stages:
            raise ValueError("StageRunner needs at least one stage")
        self.stages, self.source = list(stages), source
        self.on_error, self.on_step = on_error, on_step
        self.newer_waiting, self.on_dropped = newer_waiting, on_dropped
        self.dropped = 0
        self.pipelined, self.period_s = bool(pipelined), float(period_s)
        self._stop = threading.Event()
        self._next_take_s = 0.0
        if self.pipelined and len(self.stages) > 1:
            self._slots = [Handoff() for _ in self.stages[1:]]
            targets = [lambda i=i: self._stage_loop(i) for i in range(len(self.stages))]
            names = [f"{name}_{stage.name}" for stage in self.stages]
        else:
            self._slots = []
            targets, names = [self._sequential_loop], [f"{name}_worker"]
        self.threads = [threading.Thread(target=t, name=n, daemon=True)
                        for t, n in zip(targets, names, strict=True)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops every thread after the stage it is in; inputs between stages are dropped."""
        self._stop.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=timeout_s)

    def _take(self) -> Any:
        """The next input, no sooner than period_s after the previous one; None if none came."""
        if self.period_s:
            if self._stop.wait(max(0.0, self._next_take_s - time.monotonic())):
                return None
        item = self.source(POLL_S)
        if item is not None:
            self._next_take_s = time.monotonic() + self.period_s
        return item

    def _run(self, stage: Stage, item: Any) -> tuple[bool, float]:
        """(whether the stage succeeded, its seconds); a failure goes to on_error."""
        start_s = time.monotonic()
        try:
            stage.run(item)
            ok = True
        except Exception as err:  # noqa: BLE001 - the node must survive any single input
            self.on_error(item, stage.name, err)
            ok = False
        return ok, time.monotonic() - start_s

    def _sequential_loop(self) -> None:
        while not self._stop.is_set():
            item = self._take()
            if item is None:
                continue
            total_s = 0.0
            for stage in self.stages:
                ok, seconds = self._run(stage, item)
                total_s += seconds
                if not ok or self._stop.is_set():
                    break
            self.on_step(max(total_s, self.period_s))

    def _drop(self, item: Any) -> None:
        self.dropped += 1  # only the second stage's thread drops
        if self.on_dropped is not None:
            self.on_dropped(item)

    def _stage_loop(self, index: int) -> None:
        stage = self.stages[index]
        first, last = index == 0, index == len(self.stages) - 1
        inbox = None if first else self._slots[index - 1]
        outbox = None if last else self._slots[index]
        while not self._stop.is_set():
            # Take only when the next stage has room: no input waits longer than one step.
            if outbox is not None and not outbox.wait_empty(self._stop):
                return
            ready_s = time.monotonic()
            # Between stages an input travels with its longest stage time so far.
            if first:
                item, slowest_s, put_s = self._take(), 0.0, 0.0
            else:
                carried, put_s = inbox.take_timed(POLL_S)
                item, slowest_s = carried if carried is not None else (None, 0.0)
            if item is None:
                continue
            # An input prepared while this stage was busy, with a newer one waiting now, is
            # stale: the newer one goes instead. One this stage waited for is never dropped
            # (so inputs arriving faster than preparing them cannot starve the stage).
            if (index == 1 and put_s < ready_s and self.newer_waiting is not None
                    and self.newer_waiting()):
                self._drop(item)
                continue
            ok, seconds = self._run(stage, item)
            slowest_s = max(slowest_s, seconds)
            if ok and outbox is not None:
                if outbox.put((item, slowest_s), self._stop):
                    continue
                ok = False  # stopping: dropped between stages
            if ok or not self._stop.is_set():
                self.on_step(max(slowest_s, self.period_s))
