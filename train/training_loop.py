"""The training loop: AdamW, warm-up + poly/cosine decay, accumulation, DDP, checkpoints, resume.

Under ``torchrun`` (WORLD_SIZE > 1) each rank trains on its shard of every global batch
(DistributedSampler; gloo on CPU, nccl on CUDA) and DDP averages the gradients, so all ranks
hold identical parameters; only rank 0 writes files and reports progress.

Checkpoints (rank 0, every ``save_every`` iterations and at the end) in ``work_dir``: one
unit of two files committed by an atomic rename (train/checkpoint_commit.py). Distributed set-up
and the data order: train/distributed.py.

SIGINT and SIGTERM (Ctrl-C, QGIS's Cancel) during :func:`train` abandon the current step at
once (the parameters are untouched until the optimizer runs; the optimizer update and a
checkpoint write are finished first), write a checkpoint of the last completed iteration,
then raise KeyboardInterrupt: ``--resume`` always continues from where it stopped (single
process; under torchrun the last scheduled checkpoint stays). With validation,
``best.safetensors`` keeps the model of the best validation mIoU. ``resume=True`` continues
exactly where ``last`` left off: the same data order, crops, augmentations, RNG streams and
optimizer state as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ..core.errors import InputError, parameter
from ..core.interrupts import Interrupts
from ..core.models import checkpoints
from ..core.progress import ProgressCallback, ensure
from .checkpoint_commit import (  # noqa: F401 (checkpoint_iteration: also this module's API)
    all_rng_states,
    checkpoint_iteration,
    load_checkpoint_state,
    prune_checkpoint_files,
    rng_state,
    save_model,
    seed_everything,
    set_rng_state,
    state_path,
    write_checkpoint,
)
from .classes import IGNORE_INDEX
from .datasets import collate
from .distributed import (  # noqa: F401 (is_main, barrier, init_distributed: also this module's API)
    ResumableDistributedSampler,
    barrier,
    init_distributed,
    is_main,
)
from .hyperparameters import TrainConfig  # noqa: F401 (also this module's API)
from .metrics import confusion_matrix, mean_iou
from .scale_jitter import ScaleJitter

Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What a run did: iterations, the last and all losses, the best validation mIoU and its
    iteration, the validation history and the wall time."""

    iterations: int
    last_loss: float
    losses: list[float] = field(default_factory=list)
    best_miou: Optional[float] = None
    best_iteration: Optional[int] = None
    val_history: list[tuple[int, float]] = field(default_factory=list)
    wall_s: float = 0.0
    last_path: Optional[Path] = None
    best_path: Optional[Path] = None


# -- time estimate --------------------------------------------------------------------------
ESTIMATE_AFTER = 4   # steps of this run measured before the expected time is logged


def time_estimate(step_ends: list[float], it: int, iters: int) -> Optional[str]:
    """The log line with the expected time, once ``ESTIMATE_AFTER`` steps of this run have
    ended (``step_ends``: their perf_counter times; the first step, with its warm-up costs,
    is left out of the rate); None before and after, and when fewer steps remain."""
    if len(step_ends) != ESTIMATE_AFTER or it >= iters:
        return None
    per_step = (step_ends[-1] - step_ends[0]) / (ESTIMATE_AFTER - 1)
    left = per_step * (iters - it)
    end = (datetime.datetime.now() + datetime.timedelta(seconds=left)).strftime("%H:%M")
    return (f"measured {per_step:.1f} s per iteration on iterations {it - ESTIMATE_AFTER + 2}-{it}: "
            f"the remaining {iters - it} take about {_duration(left)} (ends about {end})")


def _duration(seconds: float) -> str:
    minutes = seconds / 60.0
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


# -- schedule -------------------------------------------------------------------------------
def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps: linear warm-up from 1e-3,
    then poly ((1 - t) ** power) or cosine decay to ``min_lr_ratio``."""
    warm = cfg.warmup_iters
    if warm > 0 and step < warm:
        return 1e-3 + (1.0 - 1e-3) * step / warm
    t = min(1.0, (step - warm) / max(1, cfg.iters - warm))
    if cfg.schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * t))
    elif cfg.schedule == "poly":
        decay = (1.0 - t) ** cfg.poly_power
    else:
        raise InputError(f"unknown schedule {cfg.schedule!r} (poly or cosine)")
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay


# -- point sampling -----------------------------------------------------------------------------
def adapt_point_sampling(model: torch.nn.Module, crop: int) -> Optional[int]:
    """Scale the loss's importance-sampled points per mask with the crop area, as Mask2Former's
    12544 points at 512 x 512 (at least 256; never more than the model's setting). Small CPU
    crops otherwise spend most of a step in the matcher. Changes the criterion only."""
    crit = getattr(model, "criterion", None)
    if crit is None or getattr(crit, "num_points", None) is None:
        return None
    n = int(min(crit.num_points, max(256, round(12544 * (crop / 512) ** 2))))
    crit.num_points = n
    if getattr(crit, "matcher", None) is not None and hasattr(crit.matcher, "num_points"):
        crit.matcher.num_points = n
    return n


# -- gradient checkpointing ----------------------------------------------------------------
def enable_gradient_checkpointing(backbone: torch.nn.Module) -> None:
    """Recompute each ViT block in the backward pass instead of storing its activations."""
    from torch.utils.checkpoint import checkpoint

    for blk in backbone.blocks:
        if getattr(blk, "_ces_checkpointed", False):
            continue
        inner = blk.forward

        def forward(*args, _inner=inner, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        blk.forward = forward
        blk._ces_checkpointed = True


# -- the loop -----------------------------------------------------------------------------------
def train(model: torch.nn.Module, train_set, work_dir: Path, cfg: TrainConfig, *,
          val_set=None, resume: bool = False, provenance: Optional[dict] = None,
          progress: Optional[ProgressCallback] = None, log: Optional[Log] = None,
          device: Optional[torch.device] = None) -> TrainResult:
    """Train the parameters of ``model`` that require grad on ``train_set`` (CropDataset).

    ``model`` follows core.models.model (``model(x, d)``, ``model.loss``, ``model.compute_descriptors``);
    call :func:`init_distributed` first under torchrun. Returns a :class:`TrainResult`;
    the trained weights stay in ``model`` (rank 0 also has ``work_dir/last.safetensors``).
    KeyboardInterrupt (Ctrl-C, SIGTERM) leaves a checkpoint of the last completed iteration.
    """
    work_dir = Path(work_dir)
    made = not work_dir.exists()
    try:
        with Interrupts() as interrupts:
            return _train(model, train_set, work_dir, cfg, interrupts, val_set=val_set,
                          resume=resume, provenance=provenance, progress=progress, log=log,
                          device=device)
    except BaseException:
        if made and work_dir.is_dir() and not any(work_dir.iterdir()):
            work_dir.rmdir()  # nothing was saved: leave no empty folder behind
        raise


def _train(model, train_set, work_dir: Path, cfg: TrainConfig, interrupts: Interrupts, *,
           val_set, resume, provenance, progress, log, device) -> TrainResult:
    return _Run(model, train_set, work_dir, cfg, interrupts, val_set=val_set, resume=resume,
                provenance=provenance, progress=progress, log=log, device=device).loop()


class _Run:
    """One training run: the model, its optimizer and schedule, the data stream, and the
    bookkeeping of checkpoints and validation. Built by :func:`train`, run by :meth:`loop`.

    ``snapshot``: (iteration, [RNG state]) at the end of the last completed step (single
    process): what a checkpoint written on interruption holds; ``saved_it``: the iteration of
    the last checkpoint written (None before the first one of a fresh run)."""

    def __init__(self, model, train_set, work_dir: Path, cfg: TrainConfig,
                 interrupts: Interrupts, *, val_set, resume, provenance, progress, log, device):
        self.model, self.train_set, self.cfg, self.interrupts = model, train_set, cfg, interrupts
        self.val_set = val_set
        self.progress, self.log = ensure(progress), (log or (lambda msg: None))
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.dev = device or init_distributed(cfg.device)[2]
        if self.rank == 0:
            work_dir.mkdir(parents=True, exist_ok=True)
        self.last_path, self.best_path = work_dir / "last.safetensors", work_dir / "best.safetensors"
        self.provenance = dict(provenance or {})

        seed_everything(cfg.seed, self.rank)
        model.to(self.dev)
        adapt_point_sampling(model, int(getattr(train_set, "size", 512)))
        if cfg.grad_checkpointing:
            enable_gradient_checkpointing(model.backbone)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise InputError("nothing to train: every parameter is frozen")
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: lr_factor(s, cfg))
        self.start, self.best_miou, self.best_it, self.history = 0, None, None, []
        self.val_pending = False
        if resume:
            self._resume()

        self.ddp = None
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.dev.index] if self.dev.type == "cuda" else None)
            # every trainable parameter takes part in each step: idle experts stay in the graph
            # with a zero gradient (core/models/moe.py), so DDP needs no find_unused_parameters
        self.forward = self.ddp if self.ddp is not None else model

        per_step = cfg.batch * cfg.accum
        sampler = ResumableDistributedSampler(len(train_set), self.world, self.rank, cfg.seed,
                                              self.start * per_step)
        loader = DataLoader(train_set, batch_size=cfg.batch, sampler=sampler,
                            num_workers=cfg.workers, collate_fn=self.collate_fn(), drop_last=True,
                            pin_memory=self.dev.type == "cuda",
                            # its own generator: creating the iterator must not draw from the
                            # global RNG, or a resumed run's random stream would shift by one draw
                            generator=torch.Generator().manual_seed(cfg.seed))
        self.batches = iter(loader)
        self.autocast = dict(device_type=self.dev.type, dtype=torch.bfloat16,
                             enabled=self.dev.type == "cuda")
        self.result = TrainResult(iterations=self.start, last_loss=float("nan"))
        self.t0 = time.perf_counter()
        self.timing: list[float] = []    # end times of this run's steps, for the time estimate
        self.it, self.saved_it = self.start, self.start if resume else None
        self.snapshot: Optional[tuple] = None

    def collate_fn(self):
        """The batch collation: with pixel-size jitter when ``cfg.scale_jitter`` asks for it."""
        if tuple(self.cfg.scale_jitter) == (1,):
            return collate
        return functools.partial(collate, jitter=ScaleJitter(self.cfg.scale_jitter, self.cfg.seed))

    def _resume(self) -> None:
        """Model, optimizer, schedule, validation bookkeeping and RNG from the last checkpoint."""
        state = load_checkpoint_state(self.last_path)
        _check_resumable(state, self.last_path, self.world, self.cfg)
        loaded = checkpoints.load(self.last_path, map_location="cpu")
        self.model.load_state_dict(loaded.state_dict())
        del loaded
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start = int(state["iteration"])
        best = state.get("best_miou")
        self.best_miou = None if best is None or best < 0 else float(best)
        self.best_it = int(state["best_iteration"]) if self.best_miou is not None else None
        self.val_pending = bool(int(state.get("val_pending", 0)))
        set_rng_state(state["rng"][self.rank])
        if self.rank == 0:
            if state_path(self.last_path, self.start).is_file():  # (not a legacy last.state.pt run)
                prune_checkpoint_files(self.last_path, self.start)
            self.log(f"resumed from {self.last_path} at iteration {self.start}")

    def _mark(self) -> None:
        """Remember the RNG state at the end of a completed step (single process)."""
        if self.world == 1:
            self.snapshot = (self.it, [rng_state()])

    def save(self, iteration: int, rng: list, pending: bool) -> None:
        """Write the checkpoint of ``iteration`` (rank 0), not cut by an interrupt."""
        with self.interrupts.deferred():
            if self.rank == 0:
                write_checkpoint(self.model, self.last_path, _training_state(
                    self.optimizer, self.scheduler, iteration, rng, self.best_miou, self.best_it,
                    self.cfg, self.world, pending), **self.provenance)
            barrier()
            self.saved_it = iteration

    def validate_now(self) -> None:
        """Validate at the current iteration; keep the best model in best.safetensors."""
        self.val_pending = True
        miou = validate(self.model, self.val_set, self.cfg.batch, self.dev, self.rank, self.world)
        self.history.append((self.it, miou))
        if self.rank == 0:
            self.log(f"iter {self.it}: validation mIoU {miou:.4f}")
        with self.interrupts.deferred():
            if self.best_miou is None or (math.isfinite(miou) and miou > self.best_miou):
                self.best_miou, self.best_it = miou, self.it
                if self.rank == 0:
                    save_model(self.model, self.best_path, **self.provenance, iteration=self.it,
                               val_miou=miou)
            self.val_pending = False
        self._mark()
        self.model.train()

    def step(self) -> tuple[float, float]:
        """One optimizer step over ``accum`` micro-batches: (loss averaged over ranks, lr)."""
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(cfg.accum):   # abandoned at once on an interrupt
            b = next(self.batches)
            x = b["x"].to(self.dev, non_blocking=True)
            target = b["target"].to(self.dev, non_blocking=True)
            with torch.no_grad():
                d = self.model.compute_descriptors(b["phys"].to(self.dev), b["valid"].to(self.dev))
            sync = (self.ddp.no_sync() if self.ddp is not None and micro < cfg.accum - 1
                    else contextlib.nullcontext())
            with sync:
                with torch.autocast(**self.autocast):
                    out = self.forward(x, d)
                    loss, _ = self.model.loss(out, target)
                (loss / cfg.accum).backward()
            step_loss += float(loss.detach()) / cfg.accum
        with self.interrupts.deferred():      # the update is never cut in half
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.optimizer.step()
            lr_used = self.scheduler.get_last_lr()[0]   # the rate this step ran with
            self.scheduler.step()
            self.it += 1
            self._mark()
        if self.world > 1:
            t = torch.tensor([step_loss], dtype=torch.float64, device=self.dev)
            dist.all_reduce(t)
            step_loss = float(t.item()) / self.world
        return step_loss, lr_used

    def report(self, step_loss: float, lr_used: float) -> None:
        """Progress, the log line and the time estimate (rank 0)."""
        self.result.losses.append(step_loss)
        self.result.last_loss = step_loss
        if self.rank != 0:
            return
        it, cfg = self.it, self.cfg
        self.progress("train", it, cfg.iters)
        if it % max(1, cfg.log_every) == 0 or it == cfg.iters:
            self.log(f"iter {it}/{cfg.iters} loss {step_loss:.4f} "
                     f"lr {lr_used:.3g} ({time.perf_counter() - self.t0:.0f} s)")
        self.timing.append(time.perf_counter())
        estimate = time_estimate(self.timing, it, cfg.iters)
        if estimate:
            self.log(estimate)

    def loop(self) -> TrainResult:
        """Train to ``cfg.iters``; on an interrupt, checkpoint the last completed step and
        raise KeyboardInterrupt again."""
        cfg = self.cfg
        self.model.train()
        try:
            if self.val_pending and self.val_set is not None:  # interrupted while validating
                self.validate_now()
            self.progress("train", self.it, cfg.iters)
            while self.it < cfg.iters:
                self._mark()
                self.report(*self.step())
                it = self.it
                scheduled_val = (cfg.val_every and it % cfg.val_every == 0) or it == cfg.iters
                if self.val_set is not None and scheduled_val:
                    self.validate_now()
                if (cfg.save_every and it % cfg.save_every == 0) or it == cfg.iters:
                    self.save(it, self.snapshot[1] if self.world == 1
                              else all_rng_states(self.world), False)
        except KeyboardInterrupt:
            if self.world == 1 and self.snapshot is not None and self.snapshot[0] != self.saved_it:
                done, rng = self.snapshot
                self.save(done, rng, self.val_pending and done == self.it)
                self.log(f"interrupted: checkpoint of iteration {done} in {self.last_path}")
            raise
        r = self.result
        r.iterations, r.best_miou, r.best_iteration = self.it, self.best_miou, self.best_it
        r.val_history = self.history
        r.wall_s = time.perf_counter() - self.t0
        r.last_path = self.last_path
        r.best_path = self.best_path if self.best_it is not None else None
        return r


def _check_resumable(state: dict, last_path: Path, world: int, cfg: TrainConfig) -> None:
    if not last_path.is_file():
        raise InputError(f"{last_path}: no checkpoint to resume from")
    prov = checkpoints.read_config(last_path).get("provenance", {}) or {}
    if int(prov.get("iteration", -1)) != int(state["iteration"]):
        raise InputError(f"{last_path}: model checkpoint (iteration {prov.get('iteration')}) and "
                         f"training state (iteration {state['iteration']}) disagree")
    if int(state["world_size"]) != world:
        raise InputError(f"{last_path}: saved with {state['world_size']} process(es), resumed "
                         f"with {world}; resume with as many processes (torchrun --nproc-per-node)")
    if int(state["per_step"]) != cfg.batch * cfg.accum:
        raise InputError(f"{last_path}: saved with batch x accum = {state['per_step']}, now "
                         f"{cfg.batch * cfg.accum}; resume with the same "
                         f"{parameter('batch')} and {parameter('accum')}")
    if int(state["iteration"]) > cfg.iters:
        raise InputError(f"{last_path}: already at iteration {state['iteration']} > "
                         f"{parameter('iters')} {cfg.iters}")


def _training_state(optimizer, scheduler, it: int, rng: list, best_miou, best_it,
                    cfg: TrainConfig, world: int, val_pending: bool) -> dict:
    """The training state of a checkpoint (a plain tensor/number dict)."""
    return {
        "iteration": it,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "best_miou": -1.0 if best_miou is None else float(best_miou),
        "best_iteration": -1 if best_it is None else int(best_it),
        "world_size": world,
        "per_step": cfg.batch * cfg.accum,
        "val_pending": int(val_pending),
    }


@torch.no_grad()
def validate(model, val_set, batch: int, device: torch.device, rank: int = 0, world: int = 1) -> float:
    """mIoU of ``model`` on ``val_set`` (TileDataset), sharded over ranks and summed."""
    cm = predict_confusion(model, val_set, batch, device, rank, world)
    return mean_iou(cm.cpu())


@torch.no_grad()
def predict_confusion(model, dataset, batch: int, device: torch.device, rank: int = 0,
                      world: int = 1) -> torch.Tensor:
    """The confusion matrix [K, K] of ``model`` over ``dataset`` (all ranks' shards summed)."""
    model.eval()
    k = model.num_classes
    cm = torch.zeros(k, k, dtype=torch.int64, device=device)
    idx = list(range(rank, len(dataset), world))
    for s in range(0, len(idx), batch):
        b = collate([dataset[i] for i in idx[s:s + batch]])
        x = b["x"].to(device)
        d = model.compute_descriptors(b["phys"].to(device), b["valid"].to(device))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                            enabled=device.type == "cuda"):
            probs = model.predict_proba(x, d)
        pred = probs.float().argmax(1)
        target = b["target"].to(device)
        target[~b["valid"].to(device)] = IGNORE_INDEX
        cm += confusion_matrix(pred, target, k).to(device)
    if world > 1:
        dist.all_reduce(cm)
    return cm
