"""input_qos auto: the pure decision (qos_match.py), then the node over real DDS matching a
best-effort camera, a reliable camera, a latched camera_info and a publisher that joins later."""
from __future__ import annotations

import time

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from test_node import VIEWS, Harness

from depth_fusion_ros.qos_match import (
    BEST_EFFORT,
    RELIABLE,
    TRANSIENT_LOCAL,
    VOLATILE,
    Offer,
    QosChoice,
    QosMatcher,
    choose,
    summarise,
)

REL_VOL = Offer(RELIABLE, VOLATILE)
BE_VOL = Offer(BEST_EFFORT, VOLATILE)
REL_TL = Offer(RELIABLE, TRANSIENT_LOCAL)


@pytest.mark.parametrize("offers, expected", [
    ([REL_VOL], (RELIABLE, VOLATILE)),
    ([BE_VOL], (BEST_EFFORT, VOLATILE)),
    ([REL_VOL, BE_VOL], (BEST_EFFORT, VOLATILE)),  # a reliable reader would miss the second
    ([REL_TL, REL_TL], (RELIABLE, TRANSIENT_LOCAL)),  # latched: late joiners get the last one
    ([REL_TL, REL_VOL], (RELIABLE, VOLATILE)),  # a transient-local reader would miss the second
    ([Offer(BEST_EFFORT, TRANSIENT_LOCAL)], (BEST_EFFORT, TRANSIENT_LOCAL)),
], ids=["reliable", "best_effort", "mixed", "latched", "latched_and_volatile", "be_latched"])
def test_choice_is_the_strongest_qos_every_publisher_matches(offers, expected):
    choice = choose(offers)
    assert (choice.reliability, choice.durability, choice.publishers) == (*expected, len(offers))


def test_offers_from_rclpy_policy_names_and_unknowns_are_normalised():
    assert Offer.of("RELIABLE", "TRANSIENT_LOCAL") == REL_TL
    assert Offer.of("BEST_EFFORT", "VOLATILE") == BE_VOL
    # system default / unknown: the choice that matches any publisher
    assert Offer.of("SYSTEM_DEFAULT", "UNKNOWN") == BE_VOL
    assert choose([]) is None
    assert summarise([REL_VOL, BE_VOL, REL_VOL]) == ("3 publishers: best_effort/volatile x1, "
                                                     "reliable/volatile x2")


def test_matcher_changes_only_when_the_publishers_require_it():
    matcher = QosMatcher()
    assert matcher.update([]) is None and matcher.choice is None  # nothing to match yet
    assert matcher.update([REL_VOL]) == QosChoice(RELIABLE, VOLATILE, 1)
    assert matcher.update([REL_VOL, REL_VOL]) is None  # same QoS: keep the subscription
    assert matcher.choice.publishers == 2
    assert matcher.update([REL_VOL, BE_VOL]) == QosChoice(BEST_EFFORT, VOLATILE, 2)
    assert matcher.update([]) is None and matcher.choice.reliability == BEST_EFFORT  # no churn
    assert matcher.update([REL_VOL]) == QosChoice(RELIABLE, VOLATILE, 1)
    assert matcher.changes == 2


def _qos(reliability, durability=DurabilityPolicy.VOLATILE, depth=5) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=reliability, durability=durability)


def _outputs_for_new_pairs(h: Harness, publish, timeout_s: float = 60.0) -> None:
    """Publish pairs until each view has a depth image of a pair sent from now on."""
    first_ns = time.time_ns()

    def fresh() -> bool:
        return all(any(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec >= first_ns
                       for _, m in h.received[f"{v}/depth/image"]) for v in VIEWS)

    def step() -> bool:
        if not fresh():
            publish(time.time_ns())
            h.spin_until(lambda: False, 0.4)
        return fresh()

    assert h.spin_until(step, timeout_s), h.log_path.read_text()


def test_node_matches_best_effort_reliable_and_latched_publishers_and_late_joiners(
        harness_factory):
    qos_of = {"thermal/image_raw": _qos(ReliabilityPolicy.BEST_EFFORT),  # a sensor-data camera
              "rgb/image_raw": _qos(ReliabilityPolicy.RELIABLE),
              "thermal/camera_info": _qos(ReliabilityPolicy.RELIABLE,
                                          DurabilityPolicy.TRANSIENT_LOCAL, depth=1)}
    h = harness_factory("qos", input_qos_of=qos_of, publish_points=False,
                        diagnostics_period_s=0.2)
    # Latched: published before the node has subscribed, still received (transient local).
    h.pub["thermal/camera_info"].publish(h.infos["thermal"])
    h.wait_ready()
    h.pub["rgb/camera_info"].publish(h.infos["rgb"])
    _outputs_for_new_pairs(h, h.publish_pair)
    expected = {"qos:/qos/thermal/image_raw": "best_effort/volatile",
                "qos:/qos/rgb/image_raw": "reliable/volatile",
                "qos:/qos/thermal/camera_info": "reliable/transient_local",
                "qos:/qos/rgb/camera_info": "reliable/volatile"}
    assert h.spin_until(lambda: h.diagnostics and all(
        h.diag_values().get(k) == v for k, v in expected.items()), 5.0), h.diag_values()
    log = h.log_path.read_text()
    assert "/qos/thermal/image_raw: 1 publisher: best_effort/volatile x1 -> subscribed " \
           "best_effort, volatile" in log, log
    # A best-effort RGB publisher joins: the reliable subscription could not hear it, so the
    # node re-subscribes best effort and both RGB publishers deliver.
    late = h.node.create_publisher(type(h.rgb), "rgb/image_raw",
                                   _qos(ReliabilityPolicy.BEST_EFFORT))
    assert h.spin_until(lambda: h.diag_values().get("qos:/qos/rgb/image_raw")
                        == "best_effort/volatile", 10.0), h.diag_values()
    assert h.diag_values()["input_qos_changes"] == "1"
    h.spin_until(lambda: late.get_subscription_count() > 0, 5.0)
    h.spin_until(lambda: False, 0.5)  # let the node's new reader match both writers back

    def from_late_publisher(stamp_ns: int) -> None:
        for msg, pub in ((h.thermal, h.pub["thermal/image_raw"]), (h.rgb, late)):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            pub.publish(msg)

    _outputs_for_new_pairs(h, from_late_publisher)
    _outputs_for_new_pairs(h, h.publish_pair)  # the first RGB publisher is still heard
    assert ("/qos/rgb/image_raw: 2 publishers: best_effort/volatile x1, reliable/volatile x1 "
            "-> subscribed best_effort, volatile" in h.log_path.read_text())


def test_auto_qos_and_diagnostics_run_under_sim_time_before_any_clock(harness_factory):
    """use_sim_time with no /clock yet (a bag player waiting for subscribers before it starts
    the clock): the node still re-checks the publishers and still reports, on a steady clock."""
    h = harness_factory("simqos", use_sim_time=True, publish_points=False,
                        diagnostics_period_s=0.2)
    h.wait_ready()
    assert h.spin_until(lambda: h.diagnostics, 5.0), h.log_path.read_text()
    first = {kv.key: kv.value for kv in h.diagnostics[0].values}
    for key in ("processing_errors", "unusable_thermal", "unusable_rgb", "input_qos_changes",
                "pairs_processed"):
        assert first.get(key) == "0", (key, first)  # a fixed key set from the first report
    late = h.node.create_publisher(type(h.rgb), "rgb/image_raw",
                                   _qos(ReliabilityPolicy.BEST_EFFORT))
    assert h.spin_until(lambda: late.get_subscription_count() > 0, 10.0), \
        h.log_path.read_text()
    assert h.node.count_publishers("/clock") == 0  # nobody ever published a clock
    # Stamps from the wall clock while the node's sim time is 0: one warning, not one per pair.
    h.publish_infos()
    for _ in range(2):
        _outputs_for_new_pairs(h, h.publish_pair)
    log = h.log_path.read_text()
    assert log.count("input stamps are ") == 1, log
    assert "h ahead of this node's clock (sim time): use_sim_time is on: is a /clock " \
           "publisher running" in log


def test_clock_mismatch_message_names_the_size_and_the_likely_cause():
    from depth_fusion_ros.node import clock_mismatch_message

    bag = clock_mismatch_message(5.3 * 365 * 86400, use_sim_time=False)
    assert bag.startswith("input stamps are 46428.0 h behind this node's clock (system time): "
                          "replaying a bag? Play it with --clock")
    assert clock_mismatch_message(-90.0, use_sim_time=False).startswith(
        "input stamps are 90 s ahead of")
    assert "are the camera computer's and this one's clocks synchronised" in \
        clock_mismatch_message(-90.0, use_sim_time=False)
    assert clock_mismatch_message(600.0, use_sim_time=True).startswith(
        "input stamps are 10.0 min behind this node's clock (sim time): use_sim_time is on")
