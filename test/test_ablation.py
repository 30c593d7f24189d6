"""bench/ablation.py end to end on tiny generated data: runs, table with mean ± std, plot, reuse."""
from __future__ import annotations

import json
import statistics
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

CONFIG = textwrap.dedent("""\
    model: {variant: tiny, height: 64, width: 128}
    data: {train_split: train, val_split: val, augment: null, num_workers: 0, val_step: 2}
    optim: {lr: 2.0e-3, lr_final: 1.0e-4, batch_size: 2, max_steps: 2, amp: "off",
            channels_last: false}
    schedule: {val_every: 1000, ckpt_every: 1000, log_every: 1, seed: 0, val_max_frames: 1,
               viz_frames: 0}
    """)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from training.synthetic.__main__ import main as synth_main

    root = tmp_path_factory.mktemp("ablation") / "data"
    assert synth_main(["--out", str(root), "--frames", "2", "--seed", "1", "--train", "1",
                       "--val", "1", "--test-day", "1", "--test-night", "1",
                       "--test-rainy", "1"]) == 0
    return root


def test_ablation_table_plot_and_reuse(data_root, tmp_path):
    import ablation

    config = tmp_path / "cfg.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    args = ["--data-root", str(data_root), "--out", str(out), "--config", str(config),
            "--seeds", "0,1", "--arms", "fused,rgb_only"]
    assert ablation.main(args) == 0
    table = (out / "ablation.md").read_text()
    for row in ("| thermal / test_day |", "| thermal / test_night |", "| thermal / test_rainy |",
                "| rgb / test_rainy |"):
        assert row in table
    summary = json.loads((out / "ablation.json").read_text())
    agg = summary["aggregate"]
    mean, std, n = agg["fused"]["test_night"]["metric"]["rgb"]["abs_rel"]
    runs = [summary["runs"]["fused"][str(s)]["test_night"]["metric"]["rgb"]["abs_rel"]
            for s in (0, 1)]
    assert n == 2 and mean == pytest.approx(sum(runs) / 2) and std > 0  # two seeds differ
    assert "thermal" not in agg["rgb_only"]["test_day"]["metric"]  # a baseline has one view
    change = (mean / agg["rgb_only"]["test_night"]["metric"]["rgb"]["abs_rel"][0] - 1) * 100
    assert f"| {change:+.1f} % |" in table
    assert (out / "ablation.png").stat().st_size > 5000
    # Single-camera mode of the fused arm: each view with the other camera's input blanked.
    alone = agg["fused"]["test_day"]["metric"]["rgb_alone"]["abs_rel"]
    full = agg["fused"]["test_day"]["metric"]["rgb"]["abs_rel"]
    assert alone[2] == 2 and alone[0] != full[0]
    assert "single-camera mode" in table and "| fused (alone) |" in table
    # A second call trains and evaluates nothing again.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed_*/*") if p.suffix in (".pt", ".json")}
    assert ablation.main(args) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    with pytest.raises(SystemExit, match="unknown arm"):
        ablation.main(args[:-1] + ["fused,mystery"])


def test_degraded_tables_compare_every_dropout_arm_with_its_base():
    import ablation

    def cell(mean):  # aggregate's [mean, std, n] for one view of one split
        return {"abs_rel": [mean, 0.01, 3]}

    agg = {
        "fused": {"test_day": {"metric": {"thermal": cell(0.10), "rgb": cell(0.20),
                                          "thermal_alone": cell(0.15), "rgb_alone": cell(0.30)}}},
        "fused_dropout": {"test_day": {"metric": {"thermal": cell(0.11), "rgb": cell(0.19),
                                                  "thermal_alone": cell(0.12),
                                                  "rgb_alone": cell(0.22)}}},
        "fused_dropout50": {"test_day": {"metric": {"thermal": cell(0.12), "rgb": cell(0.20),
                                                    "thermal_alone": cell(0.105),
                                                    "rgb_alone": cell(0.21)}}},
        "thermal_only": {"test_day": {"metric": {"thermal": cell(0.10)}}},
        "rgb_only": {"test_day": {"metric": {"rgb": cell(0.20)}}},
    }
    text = ablation.degraded_markdown(agg, list(agg))
    lines = text.splitlines()
    assert ("| thermal / test_day | 0.1500 ± 0.0100 | 0.1200 ± 0.0100 | 0.1050 ± 0.0100 | "
            "0.1000 ± 0.0100 | +50.0 % | +20.0 % | +5.0 % |") in lines
    cost = lines[lines.index(next(x for x in lines if x.startswith("cost of modality dropout"))):]
    assert cost[0].startswith("cost of modality dropout on full input: fused_dropout, "
                              "fused_dropout50 vs fused")
    assert ("| thermal / test_day | 0.1000 ± 0.0100 | 0.1100 ± 0.0100 | 0.1200 ± 0.0100 | "
            "+10.0 % | +20.0 % |") in cost
    assert ("| rgb / test_day | 0.2000 ± 0.0100 | 0.1900 ± 0.0100 | 0.2000 ± 0.0100 | "
            "-5.0 % | +0.0 % |") in cost
    # A dropout arm of another variant is compared with that variant, not with fused.
    assert ablation.dropout_bases(["fused", "fused_dropout_rgb30", "fused_two_towers_rgb30",
                                   "fused_rgb_blanked", "thermal_only"]) == {
        "fused": ["fused_dropout_rgb30"], "fused_two_towers": ["fused_two_towers_rgb30"]}
    # loss.blanked_weight only acts on dropout's copies: its arms share the no-dropout base.
    # ... as does late dropout (data.modality_dropout_from_step).
    late = ["fused_two_towers_dup30", "fused_two_towers_dup30_sep05", "fused_two_towers_dup30_late"]
    assert ablation.dropout_bases(late) == {"fused_two_towers": late}
    agg["fused_two_towers"] = {"test_day": {"metric": {"thermal": cell(0.08), "rgb": cell(0.16)}}}
    agg["fused_two_towers_rgb30"] = {"test_day": {"metric": {
        "thermal": cell(0.088), "rgb": cell(0.16), "thermal_alone": cell(0.09),
        "rgb_alone": cell(0.4)}}}
    lines = ablation.degraded_markdown(agg, list(agg)).splitlines()
    towers = lines[lines.index(next(x for x in lines if x.startswith(
        "cost of modality dropout on full input: fused_two_towers_rgb30 vs fused_two_towers"))):]
    assert ("| thermal / test_day | 0.0800 ± 0.0100 | 0.0880 ± 0.0100 | +10.0 % |") in towers


def test_dropout_cost_paired_by_seed():
    """The paired cost: per-seed change, its mean ± standard error and the seeds worse; seeds
    only one arm ran are left out, one seed has no error."""
    import ablation

    def run(thermal, rgb):
        return {"test_day": {"metric": {"thermal": {"abs_rel": thermal},
                                        "rgb": {"abs_rel": rgb}}}}

    base = {0: run(0.10, 0.20), 1: run(0.20, 0.20), 2: run(0.10, 0.10), 3: run(0.1, 0.1)}
    late = {0: run(0.11, 0.20), 1: run(0.21, 0.22), 2: run(0.10, 0.12)}  # seed 3 not run
    runs = {"fused_two_towers": base, "fused_two_towers_dup30_late": late}
    mean, sem, worse, n = ablation.paired_change(runs, "fused_two_towers_dup30_late",
                                                 "fused_two_towers", "test_day", "thermal")
    changes = [10.0, 5.0, 0.0]
    assert n == 3 and worse == 2 and mean == pytest.approx(5.0)
    assert sem == pytest.approx(statistics.stdev(changes) / 3**0.5)
    assert ablation.paired_change(runs, "fused_two_towers_dup30_late", "fused_two_towers",
                                  "test_night", "rgb") is None
    one = ablation.paired_change({"a": {0: run(0.11, 0.2)}, "b": {0: run(0.1, 0.2)}}, "a", "b",
                                 "test_day", "thermal")
    assert one[0] == pytest.approx(10.0) and one[3] == 1 and ablation._paired_cell(one) == \
        "+10.0 % (1 seed)"

    def cell(values):
        return {"abs_rel": [statistics.fmean(values), statistics.stdev(values), len(values)]}

    agg = {arm: {"test_day": {"metric": {
        view: cell([r["test_day"]["metric"][view]["abs_rel"] for r in per_seed.values()])
        for view in ("thermal", "rgb")}}} for arm, per_seed in runs.items()}
    lines = ablation.degraded_markdown(agg, list(agg), runs).splitlines()
    paired = lines[lines.index(next(x for x in lines if x.startswith("the same cost paired"))):]
    assert paired[2] == "| view / split | paired change fused_two_towers_dup30_late |"
    assert f"| thermal / test_day | +5.0 ± {sem:.1f} % (2/3 worse) |" in paired
    rgb = [0.0, 10.0, 20.0]
    assert (f"| rgb / test_day | +10.0 ± {statistics.stdev(rgb) / 3**0.5:.1f} % (2/3 worse) |"
            in paired)
    assert not any(x.startswith("the same cost paired")
                   for x in ablation.degraded_markdown(agg, list(agg)).splitlines())


def test_train_fit_root_lists_training_sequences_by_condition(data_root, tmp_path):
    """--train-fit scores runs on a root whose test lists are the training sequences of each
    condition (links to the real files), so test - train is the generalisation gap."""
    import ablation

    from depth_fusion_ros import ms2

    root = ablation.train_as_test_root(data_root, tmp_path)
    train = ms2.read_split(data_root, "train")
    conditions = ms2.read_conditions(data_root)
    listed = {split: ms2.read_split(root, split) for split in ms2.TEST_SPLIT_CONDITION
              if (root / f"{split}_list.txt").is_file()}
    assert sorted(s for seqs in listed.values() for s in seqs) == sorted(train)
    for split, seqs in listed.items():
        assert all(conditions[s] == ms2.TEST_SPLIT_CONDITION[split] for s in seqs)
    assert (root / "sync_data").resolve() == (data_root / "sync_data").resolve()
    assert ablation.train_as_test_root(data_root, tmp_path) == root  # idempotent


def test_fit_table_and_control_arm_report_the_view_fed_alone():
    import ablation

    def cell(mean):
        return {"abs_rel": [mean, 0.01, 3]}

    test = {"thermal_only": {"test_night": {"metric": {"thermal": cell(0.11)}}},
            "fused_rgb_blanked": {"test_night": {"metric": {"thermal": cell(0.50),
                                                            "thermal_alone": cell(0.12),
                                                            "rgb": cell(0.40)}}}}
    fit = {"thermal_only": {"test_night": {"metric": {"thermal": cell(0.09)}}},
           "fused_rgb_blanked": {"test_night": {"metric": {"thermal": cell(0.45),
                                                           "thermal_alone": cell(0.10)}}}}
    arms = list(test)
    lines = ablation.fit_markdown(test, fit, arms).splitlines()
    assert "| thermal / night | 0.0900 / 0.1100 / +0.0200 | 0.1000 / 0.1200 / +0.0200 |" in lines
    assert not any(line.startswith("| rgb / night") for line in lines)  # no RGB view measured
    table = ablation.markdown(test, arms, [0, 1, 2]).splitlines()
    assert "| thermal / test_night | 0.1100 ± 0.0100 | 0.1200 ± 0.0100 | - |" in table
    assert "| rgb / test_night | - | - | - |" in table
    test["fused"] = {"test_night": {"metric": {"thermal": cell(0.121), "rgb": cell(0.3)}}}
    table = ablation.markdown(test, list(test), [0], compare=("fused", "fused_rgb_blanked"))
    assert ("| thermal / test_night | 0.1100 ± 0.0100 | 0.1200 ± 0.0100 | 0.1210 ± 0.0100 | "
            "+10.0 % | +9.1 % |") in table.splitlines()
    assert "| view / split | thermal_only | fused_rgb_blanked | fused | change fused | " \
           "change fused_rgb_blanked |" in table


def test_generator_command_rebuilds_the_data_command_from_the_generators_record(tmp_path):
    """--record names the data: the synthetic generator's own synthetic.json is turned back into
    the command that reproduces it (output folder and speed options left out)."""
    import ablation

    from training.synthetic.__main__ import parse_args

    assert ablation.generator_command(tmp_path) is None  # not generated data: nothing claimed
    made = vars(parse_args(["--out", "/data/x", "--frames", "12", "--train", "4",
                            "--aligned-cameras", "--thermal-attenuation-m", "3000",
                            "--workers", "2"]))
    (tmp_path / "synthetic.json").write_text(json.dumps({"args": made}))
    command = ablation.generator_command(tmp_path)
    assert command.startswith("python -m training.synthetic ") and "--out" not in command
    assert "--workers" not in command and "--aligned-cameras" in command
    again = vars(parse_args(command.split()[3:] + ["--out", "/data/x", "--workers", "2"]))
    assert again == made
