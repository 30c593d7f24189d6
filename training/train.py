"""Train DMCF-SIDE on MS2-layout data (real MS2 or the synthetic generator's output).

`python -m training.train --config training/configs/<name>.yaml [--data-root DIR] [--out RUN_DIR]
[--max-steps N] [--resume] [key.sub=value ...]`   (multi-GPU: `torchrun --nproc_per_node=G -m ...`)

SILog on both views, summed (Kwon & Kim 2024); Adam (0.9, 0.999) with polynomial LR decay as in
NeWCRFs; AMP and channels-last on CUDA only. The data order is a pure function of (seed, epoch)
(DistributedSampler's shuffle) and each item's augmentation RNG is seeded from (seed, epoch,
index), so `--resume` from last.pt continues exactly the run that was interrupted.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from depth_fusion_ros.viz import save_png
from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from training.config import TrainConfig, load_config, to_dict
from training.data import add_blanked_copies
from training.evaluate import run_evaluation
from training.losses import multi_view_silog
from training.run_io import (
    EpochBatchSampler,
    RunLog,
    SeededItems,
    StopFlag,
    setup_distributed,
    setup_logging,
)

LOG = logging.getLogger("training")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; training stops without checkpointing that state."""


def poly_lr_factor(step: int, cfg) -> float:
    """Multiplier of cfg.lr at `step`: (lr - lr_final) * (1 - t/T)^power + lr_final (NeWCRFs),
    times a linear warm-up from 1/warmup_steps to 1 over the first cfg.warmup_steps steps."""
    total = max(cfg.max_steps, 1)
    progress = min(step, total) / total
    lr = (cfg.lr - cfg.lr_final) * (1.0 - progress) ** cfg.poly_power + cfg.lr_final
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    return warmup * lr / cfg.lr


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def load_init_checkpoint(model: torch.nn.Module, path: str | Path, cfg: TrainConfig) -> dict:
    """Fine-tuning start: copy an earlier run's weights into `model` (nothing else of it).

    Strict: every tensor must exist on both sides with the same shape, else a CheckpointError
    names the file, the model-config keys that differ and the first mismatching tensors. Keys
    that do not change tensor shapes (input height/width, max_depth_m) may differ; they are
    logged. Returns the checkpoint payload.
    """
    payload = load_checkpoint(path)
    state, own = payload["model"], model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                if k in state and tuple(state[k].shape) != tuple(v.shape)]
    differ = _changed_keys(payload["config"].get("model", {}), to_dict(cfg)["model"])
    if missing or unexpected or reshaped:
        raise CheckpointError(
            f"init.checkpoint {path} does not fit this model: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(reshaped)} of another shape (e.g. {reshaped[:3]}); model config keys that "
            f"differ from the checkpoint's: {[f'model.{k}' for k in differ]}. Use the "
            "checkpoint's model block (its run's config.yaml) or drop init.checkpoint")
    model.load_state_dict(state, strict=True)
    if differ:
        LOG.warning("init.checkpoint %s was trained with other model.%s (tensor shapes agree, "
                    "weights loaded)", path, differ)
    return payload


class Trainer:
    """Owns the model, optimiser, schedule, data and run folder of one training run."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, *, rank: int, world: int,
                 device: torch.device, load_init: bool = True) -> None:
        from training.model import build_model

        self.cfg, self.run_dir, self.rank, self.world, self.device = cfg, run_dir, rank, world, device
        self.is_main = rank == 0
        self.step, self.best_abs_rel = 0, math.inf
        on_cuda = device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.optim.amp) \
            if on_cuda else None
        self.channels_last = on_cuda and cfg.optim.channels_last
        torch.manual_seed(cfg.schedule.seed)  # identical initial weights on every rank
        model = build_model(cfg.model)
        if cfg.init.checkpoint and cfg.init.pretrained_encoder:
            raise CheckpointError("set init.checkpoint or init.pretrained_encoder, not both: "
                                  "the checkpoint's weights replace the ImageNet encoder")
        if cfg.init.pretrained_encoder:
            from training.model import load_pretrained_encoder

            load_pretrained_encoder(model, cfg.init.pretrained_encoder)
            LOG.info("encoder initialised from %s", cfg.init.pretrained_encoder)
        if cfg.init.checkpoint and load_init:  # --resume restores its own weights instead
            start = load_init_checkpoint(model, cfg.init.checkpoint, cfg)
            LOG.info("weights initialised from %s (its step %d); optimiser, LR schedule and "
                     "step start fresh", cfg.init.checkpoint, int(start["step"]))
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        if world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if on_cuda else None)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr,
                                          betas=tuple(cfg.optim.betas),
                                          weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: poly_lr_factor(step, cfg.optim))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)

    # ----------------------------------------------------------------------- state
    def save(self, name: str) -> None:
        """Write `name` (last.pt / best.pt) atomically; rank 0 only."""
        if not self.is_main:
            return
        save_checkpoint(self.run_dir / name, model=self.model, config=to_dict(self.cfg),
                        step=self.step, optimizer=self.optimizer, scheduler=self.scheduler,
                        best_abs_rel=self.best_abs_rel,
                        extra={"scaler": self.scaler.state_dict()})

    def resume(self, path: Path) -> None:
        """Restore model, optimiser, scheduler, step, best metric, AMP scaler and RNG states."""
        payload = load_checkpoint(path, map_location=self.device)
        try:
            unwrap_model(self.model).load_state_dict(payload["model"])
        except RuntimeError as exc:  # another network: name what differs, not 150 tensor keys
            saved = payload.get("config", {}).get("model", {})
            differ = _changed_keys(saved, to_dict(self.cfg)["model"])
            raise CheckpointError(
                f"{path} holds another network than this config builds (model.* keys that "
                f"differ: {', '.join(differ) or 'none recorded'}): resume with the run's own "
                "config.yaml (no --config, no model.* overrides)") from exc
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.best_abs_rel = float(payload.get("best_abs_rel", math.inf))
        self._resume_rng = payload["rng"]
        changed = _changed_keys(payload["config"], to_dict(self.cfg))
        if changed:
            LOG.warning("resuming with a config that differs from the checkpoint's in %s", changed)
        LOG.info("resumed from %s at step %d (best val abs_rel %.4f)", path, self.step,
                 self.best_abs_rel)

    # ----------------------------------------------------------------------- data
    def build_data(self) -> None:
        from training.data import MS2Dataset, collate

        cfg, model_cfg = self.cfg, self.cfg.model
        common = {"height": model_cfg.height, "width": model_cfg.width,
                  "max_depth_m": model_cfg.max_depth_m}
        train_set = MS2Dataset(cfg.data.root, cfg.data.train_split, train=True,
                               step=cfg.data.step, augment=cfg.data.augment,
                               modality_dropout_p=cfg.data.modality_dropout_p,
                               modality_dropout_of=cfg.data.modality_dropout_of,
                               modality_dropout_mode=cfg.data.modality_dropout_mode,
                               conditions=cfg.data.conditions,
                               min_speed_mps=cfg.data.min_speed_mps, **common)
        self.val_set = MS2Dataset(cfg.data.root, cfg.data.val_split, train=False,
                                  step=cfg.data.val_step, **common) if self.is_main else None
        self.sampler = EpochBatchSampler(len(train_set), cfg.optim.batch_size,
                                         seed=cfg.schedule.seed, rank=self.rank, world=self.world,
                                         start_step=self.step)
        self.loader = torch.utils.data.DataLoader(
            SeededItems(train_set, cfg.schedule.seed), batch_sampler=self.sampler, collate_fn=collate,
            num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.data.num_workers > 0,
            # Own generator: creating the iterator then never draws from the global torch RNG,
            # which the checkpoint restores for the model (drop-path) on resume.
            generator=torch.Generator().manual_seed(cfg.schedule.seed))
        LOG.info("train: %d frames (%d steps/epoch on this rank), val: %s frames", len(train_set),
                 self.sampler.steps_per_epoch, len(self.val_set) if self.val_set else "-")
        if any(train_set.skipped.values()):
            LOG.info("data protocol dropped %d train frames by condition (kept %s) and %d as "
                     "static (< %.2f m/s)", train_set.skipped["condition"], cfg.data.conditions,
                     train_set.skipped["static"], cfg.data.min_speed_mps)

    # ----------------------------------------------------------------------- steps
    def train_step(self, batch: dict) -> tuple[float, dict[str, float]]:
        """One optimiser step on a batch; raises NonFiniteLossError before touching weights."""
        if self.step < self.cfg.data.modality_dropout_from_step:  # late dropout: not yet
            batch = {k: v for k, v in batch.items() if not k.startswith("drop_")}
        batch = add_blanked_copies(batch)  # modality_dropout_mode duplicate (else unchanged)
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        thermal = batch["thermal"].to(self.device, non_blocking=True).contiguous(memory_format=memory)
        rgb = batch["rgb"].to(self.device, non_blocking=True).contiguous(memory_format=memory)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                            enabled=self.amp_dtype is not None):
            outputs = self.model(thermal, rgb)
        outputs = {k: v.float() for k, v in outputs.items()}
        loss, parts = multi_view_silog(outputs, batch, max_depth_m=self.cfg.model.max_depth_m,
                                       cfg=self.cfg.loss)
        finite = torch.isfinite(loss.detach()).float()
        if self.world > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() < 1.0:
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {self.step + 1} (parts {parts}); stopping without "
                f"writing a checkpoint from this state. The last good checkpoint is "
                f"{self.run_dir / 'last.pt'} (if any). Try a lower optim.lr, optim.amp=off, or "
                "check the data for invalid depth values.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach()), parts

    def validate(self, log: RunLog) -> None:
        """Metric-depth validation (rank 0): scalars, a PNG, and best.pt by mean-of-views abs_rel."""
        if self.is_main:
            model = unwrap_model(self.model)
            results, sheets = run_evaluation(
                model, self.val_set, device=self.device, max_depth_m=self.cfg.model.max_depth_m,
                max_frames=self.cfg.schedule.val_max_frames,
                viz_frames=self.cfg.schedule.viz_frames, progress=False)
            model.train()
            scalars = {f"val/{view}/{name}": value
                       for view, metrics in results["metric"].items()
                       for name, value in metrics.items()}
            abs_rel = float(np.mean([m["abs_rel"] for m in results["metric"].values()]))
            scalars["val/abs_rel"] = abs_rel
            log.scalars(self.step, scalars)
            LOG.info("step %d validation (%d frames, metric depth): abs_rel %.4f %s", self.step,
                     results["frames"], abs_rel,
                     {v: round(m["abs_rel"], 4) for v, m in results["metric"].items()})
            if sheets:
                save_png(self.run_dir / "val" / f"step_{self.step:07d}.png", np.concatenate(sheets))
            if math.isfinite(abs_rel) and abs_rel < self.best_abs_rel:
                self.best_abs_rel = abs_rel
                self.save("best.pt")
                LOG.info("new best val abs_rel %.4f -> best.pt", abs_rel)
        if self.world > 1:
            torch.distributed.barrier()

    # ----------------------------------------------------------------------- loop
    def fit(self, stop: StopFlag, stop_at_step: int | None = None) -> None:
        """Steps until max_steps, `stop_at_step` or a stop signal; the caller saves last.pt."""
        sched, total = self.cfg.schedule, self.cfg.optim.max_steps
        if stop_at_step is not None:
            total = min(total, stop_at_step)
        log = RunLog(self.run_dir, enabled=self.is_main, resume_step=self.step)
        if getattr(self, "_resume_rng", None) is not None:
            restore_rng_state(self._resume_rng)  # after all set-up that may draw random numbers
        self.model.train()
        progress = tqdm(total=total, initial=self.step, disable=not self.is_main,
                        dynamic_ncols=True, desc="train")
        window, started, validated_at = [], time.monotonic(), None
        batches = iter(self.loader)
        try:
            while self.step < total and stop.reason is None:
                loss, parts = self.train_step(next(batches))
                self.step += 1
                window.append(loss)
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.3f}")
                if self.step % sched.log_every == 0 or self.step == total:
                    rate = len(window) / max(time.monotonic() - started, 1e-9)
                    log.scalars(self.step, {"train/loss": float(np.mean(window)),
                                            "train/lr": self.scheduler.get_last_lr()[0],
                                            "train/steps_per_s": rate,
                                            **{f"train/{k}": v for k, v in parts.items()}})
                    LOG.info("step %d loss %.4f lr %.3g (%.2f steps/s)", self.step,
                             np.mean(window), self.scheduler.get_last_lr()[0], rate)
                    window, started = [], time.monotonic()
                if self.step % sched.val_every == 0:
                    self.validate(log)
                    validated_at = self.step
                if self.step % sched.ckpt_every == 0:
                    self.save("last.pt")
            finished = self.step == self.cfg.optim.max_steps
            if finished and total > 0 and validated_at != self.step and stop.reason is None:
                self.validate(log)
        finally:
            progress.close()
            log.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="run config YAML (optional with --resume: the run's own)")
    parser.add_argument("--data-root", help="MS2-layout data folder (overrides data.root)")
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    parser.add_argument("--max-steps", type=int, help="overrides optim.max_steps")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--stop-at-step", type=int, default=None,
                        help="stop at this global step as if interrupted (last.pt written, LR "
                             "schedule still over max_steps): for time-boxed or preemptible jobs")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. optim.lr=1e-4 "
                        "(anywhere on the command line)")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after options


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    """The run config (file + overrides + CLI options) and the run folder; checks resume state."""
    run_dir = Path(args.out) if args.out else None
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.max_steps is not None:
        overrides.append(f"optim.max_steps={args.max_steps}")
    if args.config:
        cfg = load_config(args.config, overrides)
        run_dir = run_dir or Path("runs") / Path(args.config).stem
    elif args.resume and run_dir and (run_dir / "config.yaml").is_file():
        cfg = load_config(run_dir / "config.yaml", overrides)
    else:
        raise SystemExit("training.train: pass --config CONFIG.yaml (or --resume with --out RUN_DIR)")
    last = run_dir / "last.pt"
    if args.resume and not last.is_file():
        raise SystemExit(f"training.train: --resume but {last} does not exist; start without "
                         "--resume or point --out at the run folder to continue")
    if not args.resume and last.is_file():
        raise SystemExit(f"training.train: {last} already exists; add --resume to continue that "
                         "run or choose another --out")
    if (cfg.model.align_views or cfg.model.align_inputs) and cfg.model.view_homography is None:
        from depth_fusion_ros.ms2 import MS2FormatError
        from training.model.alignment import homography_from_dataset

        try:  # the rig's, once: config.yaml keeps it, so --resume and export use the same one
            cfg.model.view_homography = homography_from_dataset(cfg.data.root,
                                                                cfg.data.train_split)
        except (ValueError, MS2FormatError) as exc:
            raise SystemExit(f"training.train: {exc}") from exc
    return cfg, run_dir


def _write_run_files(cfg: TrainConfig, run_dir: Path, argv: list[str]) -> None:
    """Resolved config (config.yaml) and the command line (appended to command.txt)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    with open(run_dir / "command.txt", "a") as handle:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"{stamp}  {sys.executable} -m training.train {' '.join(argv)}\n")


def _remove_stale_checkpoint_temporaries(run_dir: Path) -> None:
    """Temporaries of checkpoint writes whose process is gone (a SIGKILL mid-save): removed on
    the next run, not only on its next save of the same file."""
    from depth_fusion_ros.fileio import remove_stale_temporaries, temporary_pattern

    for name in ("last.pt", "best.pt"):
        for path in remove_stale_temporaries(run_dir, temporary_pattern(run_dir / name)):
            LOG.info("removed %s, left by a killed run's checkpoint write", path.name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        cfg, run_dir = resolve_config(args)
    except (ValueError, KeyError, OSError) as exc:  # config file, key or value: one clear line
        print(f"training.train: error: {exc}", file=sys.stderr)
        return 2
    rank, world, device = setup_distributed()
    # A resumed run's config.yaml and command.txt are rewritten only once the checkpoint and the
    # data have loaded: a failed --resume (another --config, a mistyped --data-root) must not
    # replace the config the next plain --resume reads.
    if rank == 0 and not args.resume:
        _write_run_files(cfg, run_dir, argv)
    setup_logging(run_dir / "train.log" if rank == 0 else None)
    LOG.info("run folder %s on %s (world size %d)", run_dir, device, world)
    if rank == 0:
        _remove_stale_checkpoint_temporaries(run_dir)
    try:
        trainer = Trainer(cfg, run_dir, rank=rank, world=world, device=device,
                          load_init=not args.resume)
        if args.resume:
            trainer.resume(run_dir / "last.pt")
        if args.resume and trainer.step >= cfg.optim.max_steps:
            LOG.info("%s finished at step %d of %d: nothing to do (raise --max-steps to train "
                     "on: the LR schedule then decays over the new horizon)", run_dir,
                     trainer.step, cfg.optim.max_steps)
            return 0
        trainer.build_data()
    except CheckpointError as exc:
        LOG.error("%s", exc)
        return 2
    except (ValueError, OSError) as exc:  # data root, split or calibration files: no traceback
        LOG.error("cannot start: %s", exc)
        return 2
    if rank == 0 and args.resume:
        _write_run_files(cfg, run_dir, argv)
    stop = StopFlag()
    stop.install()
    try:
        trainer.fit(stop, args.stop_at_step)
    except NonFiniteLossError as exc:
        LOG.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        # A second Ctrl-C inside a step: the weights may be half-updated, so do not save them.
        LOG.error("interrupted inside step %d; not saving (last.pt holds the last checkpoint)",
                  trainer.step + 1)
        return 130
    finally:
        stop.uninstall()
    trainer.save("last.pt")
    if stop.reason:
        LOG.warning("stopped by %s at step %d; last.pt written, continue with --resume",
                    stop.reason, trainer.step)
        return 130 if stop.reason == "SIGINT" else 143
    if trainer.step < cfg.optim.max_steps:
        LOG.info("stopped at step %d of %d (--stop-at-step); last.pt written, continue with "
                 "--resume", trainer.step, cfg.optim.max_steps)
    else:
        LOG.info("done at step %d; best val abs_rel %.4f; checkpoints in %s", trainer.step,
                 trainer.best_abs_rel, run_dir)
    if world > 1:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
