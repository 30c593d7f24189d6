"""Subscription QoS that matches the publishers found on a topic (`input_qos: auto`).

Plain Python, no rclpy: the node reads the publishers' offered QoS from the ROS graph
(`Node.get_publishers_info_by_topic`) and asks `QosMatcher.update` what to subscribe with.

DDS request/offer rules (a subscription only receives from publishers it is compatible with):
- a RELIABLE subscription matches only RELIABLE publishers; a BEST_EFFORT one matches both;
- a TRANSIENT_LOCAL subscription matches only TRANSIENT_LOCAL publishers; VOLATILE matches both.
So the subscription that hears every publisher with the strongest guarantee they all give is
reliable iff every publisher is reliable, and transient-local iff every publisher is. This is
what rosbag2 does when recording ("adapt request to offers", rosbag2_transport/qos.cpp) and what
Jazzy's BEST_AVAILABLE policy does once at creation; here the decision is re-made whenever the
publishers change, so a camera driver started after the node is still matched.

Why it matters: a reliable camera (or a bag played reliable) read by a best-effort subscription
falls back to best effort, which loses large images on a busy machine; a best-effort camera is
not heard at all by a reliable subscription (the classic QoS-mismatch complaint).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RELIABLE, BEST_EFFORT = "reliable", "best_effort"
VOLATILE, TRANSIENT_LOCAL = "volatile", "transient_local"
AUTO_DEPTH = 10  # keep-last depth of auto subscriptions (the bag player's writer depth)


@dataclass(frozen=True)
class Offer:
    """The QoS one publisher offers (policy names as in rclpy, any case)."""

    reliability: str
    durability: str

    @classmethod
    def of(cls, reliability: str, durability: str) -> Offer:
        """Normalised offer: anything but reliable (unknown, system default) counts as best
        effort and anything but transient-local as volatile, the choices that match anyway."""
        rel = RELIABLE if str(reliability).lower() == RELIABLE else BEST_EFFORT
        dur = TRANSIENT_LOCAL if str(durability).lower() == TRANSIENT_LOCAL else VOLATILE
        return cls(rel, dur)


@dataclass(frozen=True)
class QosChoice:
    """What to subscribe with, and from how many publishers that was decided."""

    reliability: str
    durability: str
    publishers: int

    def describe(self) -> str:
        """E.g. 'reliable, volatile, keep last 10'."""
        return f"{self.reliability}, {self.durability}, keep last {AUTO_DEPTH}"


def choose(offers: Iterable[Offer]) -> QosChoice | None:
    """The strongest QoS compatible with every offer; None without publishers."""
    offers = list(offers)
    if not offers:
        return None
    reliable = all(o.reliability == RELIABLE for o in offers)
    latched = all(o.durability == TRANSIENT_LOCAL for o in offers)
    return QosChoice(RELIABLE if reliable else BEST_EFFORT,
                     TRANSIENT_LOCAL if latched else VOLATILE, len(offers))


def summarise(offers: Iterable[Offer]) -> str:
    """E.g. '2 publishers: reliable/volatile x1, best_effort/volatile x1' for the log line."""
    counts: dict[str, int] = {}
    for offer in offers:
        key = f"{offer.reliability}/{offer.durability}"
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    noun = "publisher" if total == 1 else "publishers"
    return f"{total} {noun}: " + ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))


class QosMatcher:
    """Per-topic decision; changes only when the publishers require another QoS.

    Usage: `change = matcher.update(offers)`; subscribe (or re-subscribe) with `change` when it is
    not None. Until a publisher is seen there is nothing to match, so no subscription is made; when
    all publishers leave, the current subscription stays (it matches the same kind of publisher
    again) instead of churning.
    """

    def __init__(self) -> None:
        self.choice: QosChoice | None = None
        self.changes = 0  # re-subscriptions after the first one

    def update(self, offers: Iterable[Offer]) -> QosChoice | None:
        """The new choice if the subscription must be (re)made, else None."""
        new = choose(offers)
        if new is None:
            return None
        old = self.choice
        if old is not None and (old.reliability, old.durability) == (new.reliability,
                                                                      new.durability):
            self.choice = new  # same QoS; remember the publisher count for the diagnostics
            return None
        self.changes += old is not None
        self.choice = new
        return new
