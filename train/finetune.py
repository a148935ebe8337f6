"""Fine-tuning on local labels (paper §5.1): backbone frozen, decoder trained.

:func:`run_training` is shared with continued pre-training (its recipe: train/hyperparameters.py): it reads
the labelled data, prepares the model from a base checkpoint (a whole model, or an imported
DINOv2 backbone of kind "backbone"), trains (train/training_loop.py, DDP under torchrun), stores the
training data's descriptor statistics in the output's config and writes the output
checkpoint atomically: the best-validation model when validation data is given, else the
last one. Before training it checks that the work folder and the output have the disk space
the checkpoints and the output model need (:func:`space_needs`, core/disk_space.py).
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..core.atomic import check_writable
from ..core.disk_space import Need, check_space, need
from ..core.errors import InputError, ParameterError, parameter
from ..core.inference.window_grid import MIN_TILE
from ..core.models import checkpoints
from ..core.models.mask_refiner import REFINE_DEFAULTS
from ..core.models.model import build_from_config, model_config, trained_bands
from ..core.scene.descriptors import DEFAULT_SCALING, NAMES as DESCRIPTOR_NAMES
from .augment import Augment
from .checkpoint_commit import checkpoint_bytes
from .classes import ClassSpec, from_model_classes, load_classes
from .datasets import CropDataset, TileDataset, collate
from .labelled_scenes import load_labelled_scenes
from .scale_jitter import native_pixel_size, record_pixel_sizes
from .sources import load_data_file, load_source_scenes
from .training_loop import TrainConfig, barrier, init_distributed, is_main, train


def freeze_backbone(model) -> None:
    """Freeze the backbone (experts, routers, attention); an Earth-Adapter in it stays trainable."""
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(name.startswith("adapter."))


def freeze_all_but_refiner(model) -> None:
    """Freeze every parameter except the mask refiner's: the model recognises what it did and
    only its full-resolution edges are trained (core/models/mask_refiner.py)."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("refiner."))


def prepare_model(base: Optional[os.PathLike | str], classes: ClassSpec, unfreeze: bool = False,
                  variant: str = "ti", adapter: Optional[dict] = None, refine: bool = False,
                  refiner_only: bool = False):
    """(model, notes): the base checkpoint with ``classes``; a class count different from the
    base re-initializes only the tensors whose shape changes (the class layer); a "backbone"
    checkpoint gets a fresh head; no base: a randomly initialized ``variant``.
    ``unfreeze`` False freezes the backbone. ``adapter`` ({kind, rank, cutoff}, core/models/adapter.py):
    add an Earth-Adapter (new, unless the base has one) and train it with the decoder, the
    backbone frozen. ``refine``: add a full-resolution mask refiner (new, unless the base has
    one; core/models/mask_refiner.py). ``refiner_only``: add the refiner when the base has none
    and train it alone, everything else frozen (needs a whole trained model with its classes)."""
    if refiner_only:
        _check_refiner_only(base, classes, unfreeze, adapter)
        refine = True
    if adapter is not None and unfreeze:
        raise InputError(f"{parameter('peft')} earth-adapter trains adapters on a frozen "
                         f"backbone; it cannot be combined with {parameter('unfreeze')}")
    if base is None:
        cfg = model_config(variant, classes=classes.to_config(), refine={} if refine else None)
        if adapter is not None:
            cfg["backbone"]["adapter"] = dict(adapter)
        model = build_from_config(cfg)
        model.config["provenance"] = {"base_model": f"random {variant}"}
        if not unfreeze:
            freeze_backbone(model)
        return model, {"base": None, "base_kind": "random", "reinitialized": ["everything (no base)"],
                       "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    base = Path(base)
    config = checkpoints.read_config(base)
    loaded = checkpoints.load(base, map_location="cpu")
    notes: dict[str, Any] = {"base": str(base), "base_kind": config["kind"]}
    if config["kind"] == "backbone":
        bb = loaded.config
        new_cfg = model_config(bb["variant"], classes=classes.to_config(),
                               experts=int(bb.get("experts", 0)), top_k=max(1, int(bb.get("top_k", 1))),
                               refine={} if refine else None)
        new_cfg["backbone"] = copy.deepcopy(bb)
        if adapter is not None and not bb.get("adapter"):
            new_cfg["backbone"]["adapter"] = dict(adapter)
        new_cfg["feature_layers"] = list(bb["feature_layers"])
        if isinstance(config.get("descriptors"), dict):
            new_cfg["descriptors"].update({k: v for k, v in config["descriptors"].items()
                                           if k in ("bins", "block", "scaling")})
        model = build_from_config(new_cfg)
        missing, _ = model.backbone.load_state_dict(loaded.state_dict(), strict=False)
        if [k for k in missing if not k.startswith("adapter.")]:
            raise InputError(f"{base}: backbone lacks tensors {missing[:3]}")
        notes["reinitialized"] = ["head (new)"] + (["backbone.adapter (new)"] if missing else [])
    else:
        new_cfg = copy.deepcopy(loaded.config)
        new_cfg["classes"] = classes.to_config()
        new_cfg.pop("provenance", None)
        if refine and not new_cfg.get("refine"):
            new_cfg["refine"] = dict(REFINE_DEFAULTS)
        if adapter is not None and not new_cfg["backbone"].get("adapter"):
            new_cfg["backbone"]["adapter"] = dict(adapter)
        model = build_from_config(new_cfg)
        own = model.state_dict()
        reinit = []
        with torch.no_grad():
            for name, value in loaded.state_dict().items():
                if name in own and tuple(own[name].shape) == tuple(value.shape):
                    own[name].copy_(value)
                else:
                    reinit.append(name)
        fresh = sorted(set(reinit) | (set(own) - set(loaded.state_dict())))
        new_adapter = [k for k in fresh if k.startswith("backbone.adapter.")]
        new_refiner = [k for k in fresh if k.startswith("refiner.")]
        notes["reinitialized"] = ([k for k in fresh if k not in new_adapter + new_refiner]
                                  + (["backbone.adapter (new)"] if new_adapter else [])
                                  + (["refiner (new)"] if new_refiner else []))
    base_prov = getattr(loaded, "provenance", {}) or {}
    model.config["provenance"] = {"base_model": base.name,
                                  **({"base_provenance": base_prov} if base_prov else {})}
    model.provenance = {}
    del loaded
    if refiner_only:
        freeze_all_but_refiner(model)
    elif not unfreeze:
        freeze_backbone(model)
    notes["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, notes


def _check_refiner_only(base: Optional[os.PathLike | str], classes: ClassSpec, unfreeze: bool,
                        adapter: Optional[dict]) -> None:
    """Refuse a refiner-only run that would leave untrained parts frozen or train more."""
    flag = parameter("refiner_only")
    if adapter is not None or unfreeze:
        other = parameter("peft") + " earth-adapter" if adapter is not None else parameter("unfreeze")
        raise InputError(f"{flag} trains the mask refiner alone; it cannot be combined with {other}")
    if base is None or checkpoints.read_config(base).get("kind") != "model":
        raise InputError(f"{flag} needs a whole trained model as its base (with its head), "
                         f"not {'a random initialization' if base is None else 'a backbone: ' + str(base)}")
    own = base_classes(base)
    if own is not None and len(own.names) != len(classes.names):
        raise InputError(f"{flag}: {len(classes.names)} classes ({', '.join(classes.names)}), but "
                         f"the base model's frozen head has {len(own.names)} ({', '.join(own.names)})")


def base_classes(base: os.PathLike | str) -> Optional[ClassSpec]:
    """The classes of a whole-model base checkpoint (None for a backbone)."""
    config = checkpoints.read_config(base)
    if config.get("kind") == "model" and config.get("classes"):
        return from_model_classes(config["classes"])
    return None


@torch.no_grad()
def descriptor_statistics(model, dataset: TileDataset, max_tiles: int = 256, batch: int = 8,
                          seed: int = 0) -> dict:
    """Per-descriptor mean, std, p01, p99 of the scaled descriptors of (up to ``max_tiles``)
    training tiles: ``{"H_DE": {...}, "ENL": {...}, "R_LR": {...}, "tiles": n}``."""
    n = len(dataset)
    idx = np.arange(n)
    if n > max_tiles:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_tiles, replace=False))
    rows = []
    for s in range(0, len(idx), batch):
        b = collate([dataset[int(i)] for i in idx[s:s + batch]])
        keep = b["valid"].flatten(1).any(1)
        if keep.any():
            d = model.compute_descriptors(b["phys"][keep], b["valid"][keep])
            rows.append(d.float().cpu().numpy())
    if not rows:
        return {"tiles": 0}
    d = np.concatenate(rows)
    out: dict[str, Any] = {"tiles": int(d.shape[0])}
    for i, name in enumerate(DESCRIPTOR_NAMES):
        col = d[:, i]
        out[name] = {"mean": round(float(col.mean()), 6), "std": round(float(col.std()), 6),
                     "p01": round(float(np.percentile(col, 1)), 6),
                     "p99": round(float(np.percentile(col, 99)), 6)}
    return out


def record_input(model, scenes, open_options: dict) -> None:
    """Write the input contract and the bands trained on into ``model.config["input"]``:
    the longest band-name list among the training scenes (e.g. ["VV", "VH"] when dual-pol
    tiles are in the mix), so segment and evaluate pick those bands without flags and fall
    back to the first band (copied 3x) for single-pol scenes."""
    from ..core.scene import contracts
    from .datasets import SceneCache

    cache, best = SceneCache(size=1, **open_options), None
    seen = set()
    for sc in scenes:
        key = (sc.image.suffix.lower(), tuple(sorted(sc.options)), str(sc.image.parent))
        if key in seen:
            continue
        seen.add(key)
        names = cache.get(sc.image, sc.options).band_names
        if all(names) and (best is None or len(names) > len(best)) and len(names) <= 2:
            best = [str(n).upper() for n in names]
    cache.close()
    if model.config["input"].get("contract") != contracts.INPUT_CONTRACT:
        # a base from before contract 2 saw other descriptor values: today's scaling
        model.config["descriptors"]["scaling"] = copy.deepcopy(DEFAULT_SCALING)
    model.config["input"]["contract"] = contracts.INPUT_CONTRACT
    if best:
        model.config["input"]["bands"] = best


def default_work_dir(out: Path) -> Path:
    """``OUT.safetensors`` -> ``OUT.ckpt/`` beside it (checkpoints and training state)."""
    name = out.name[:-len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return out.with_name(name + ".ckpt")


def space_needs(model: torch.nn.Module, work: Path, out: Path, validation: bool) -> list[Need]:
    """The disk space a training run needs at least (bytes): a checkpoint in ``work`` (the
    model file and AdamW's two moments of the trainable parameters; the previous checkpoint
    stays until the new one is committed, so this much is free even on resume), the best
    model with validation, and the output model."""
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    last = work / "last.safetensors"
    needs = [need(last, checkpoint_bytes(model)), need(out, model_bytes)]
    if validation:
        needs.append(need(work / "best.safetensors", model_bytes))
    return needs


def run_training(*, mode: str, base: Optional[os.PathLike | str], images: Sequence[str], labels: Sequence[str],
                 out: os.PathLike | str, cfg: TrainConfig, classes_file: Optional[str] = None,
                 class_field: Optional[str] = None, pair_pattern: Optional[str] = None,
                 val_images: Sequence[str] = (), val_labels: Sequence[str] = (),
                 tile: int = 512, unfreeze: bool = False, augment: bool = True,
                 work_dir: Optional[os.PathLike | str] = None, resume: bool = False,
                 overwrite: bool = False, domain: Optional[str] = None,
                 bands: Optional[Sequence] = None, calibrated: Optional[bool] = None,
                 variant: Optional[str] = None,
                 data_file: Optional[os.PathLike | str] = None, adapter: Optional[dict] = None,
                 refine: bool = False, refiner_only: bool = False, progress=None, log=None) -> dict:
    """Fine-tune (``mode="finetune"``) or continue pre-training (``"pretrain"``); returns a
    summary dict (model path, iterations, losses, validation mIoU, wall time...).

    The training data is ``images``/``labels`` (one source) or ``data_file`` (several sources,
    train/sources.py), not both."""
    out = Path(out)
    if data_file is not None and (images or labels or classes_file):
        raise InputError(f"{parameter('data_file')}: give either a data file or "
                         f"{parameter('images')}/{parameter('labels')}/{parameter('classes')}, not both")
    if data_file is None and not (images and labels):
        raise ParameterError("images" if not images else "labels", None,
                             "required (or a data file listing the sources)")
    if out.suffix.lower() != ".safetensors":
        raise InputError(f"{out}: the output model must be a .safetensors file")
    if not resume or out.exists():
        check_writable(out, overwrite)
    for name in ("iters", "batch", "accum"):
        if getattr(cfg, name) < 1:
            raise ParameterError(name, getattr(cfg, name), "must be at least 1")
    if tile < MIN_TILE:
        raise ParameterError("tile", tile, f"must be at least {MIN_TILE} pixels")
    work = Path(work_dir) if work_dir else default_work_dir(out)
    if resume and not (work / "last.safetensors").is_file():
        raise InputError(f"{work}: no checkpoint to resume from (last.safetensors)")
    rank, world, device = init_distributed(cfg.device)
    open_opts = dict(domain=domain, bands=bands, calibrated=calibrated)
    base_bands = trained_bands(checkpoints.read_config(base)) if base is not None else None
    if data_file is not None:
        base_bands = None   # each source's own bands (dual-pol stays dual-pol), not the base's
    scene_opts = dict(open_opts, prefer=base_bands)

    if data_file is not None:
        data = load_data_file(data_file)
        classes = data.classes
        scenes = load_source_scenes(data, prefer_bands=base_bands,
                                    progress=progress if rank == 0 else None,
                                    log=log if rank == 0 else None)
    else:
        if classes_file:
            classes = load_classes(classes_file)
            prefer = None
        else:
            classes, prefer = None, (base_classes(base) if base is not None else None)
        scenes, classes = load_labelled_scenes(images, labels, classes, class_field, pair_pattern,
                                               prefer=prefer, progress=progress if rank == 0 else None,
                                               prefer_bands=base_bands, **open_opts)
    val_set = None
    if val_images or val_labels:
        if not (val_images and val_labels):
            raise InputError(f"give both {parameter('val_images')} and {parameter('val_labels')}")
        val_scenes, _ = load_labelled_scenes(val_images, val_labels, classes, class_field,
                                             pair_pattern, prefer_bands=base_bands, **open_opts)
        val_set = TileDataset(val_scenes, tile, **scene_opts)

    torch.manual_seed(cfg.seed)   # a new head or adapter starts from the run's seed: reproducible
    model, notes = prepare_model(base, classes, unfreeze=unfreeze, variant=variant or "ti",
                                 adapter=adapter, refine=refine, refiner_only=refiner_only)
    check_space(space_needs(model, work, out, val_set is not None))   # before any training
    record_input(model, scenes, scene_opts)
    if tuple(cfg.scale_jitter) != (1,):
        record_pixel_sizes(model.config, cfg.scale_jitter, native_pixel_size(scenes[0].image, cfg.pixel_size))
    aug = Augment() if augment else None
    train_set = CropDataset(scenes, tile, augment=aug, seed=cfg.seed, **scene_opts)
    stats = descriptor_statistics(model, TileDataset(scenes, tile, **scene_opts), seed=cfg.seed)
    model.config["descriptors"]["train_stats"] = stats
    if rank == 0 and log:
        log(f"{mode}: {len(scenes)} image(s), {len(classes)} classes "
            f"({', '.join(classes.names)}), crops {train_set.size} px, "
            f"{notes['trainable_params']:,} trainable parameters"
            + (f", re-initialized: {', '.join(notes['reinitialized'])}" if notes.get("reinitialized") else ""))
    provenance = {"trained": mode, "train_images": len(scenes),
                  **({"data_file": Path(data_file).name} if data_file else {}),
                  "train_config": {k: v for k, v in vars(cfg).items()}}
    result = train(model, train_set, work, cfg, val_set=val_set, resume=resume,
                   provenance=provenance, progress=progress if rank == 0 else None, log=log,
                   device=device)
    digests = rank_digests(model)
    final_prov = {**provenance, "iterations": result.iterations,
                  "final_loss": round(result.last_loss, 6) if math.isfinite(result.last_loss) else None}
    chosen = "last"
    if result.best_path is not None and is_main():
        best = checkpoints.load(result.best_path)
        model.load_state_dict(best.state_dict())
        chosen = f"best (validation mIoU {result.best_miou:.4f} at iteration {result.best_iteration})"
        final_prov.update(val_miou=result.best_miou, selected_iteration=result.best_iteration)
    if is_main():
        checkpoints.save(model, out, **final_prov)
    barrier()
    summary = {
        "model": str(out), "mode": mode, "iterations": result.iterations,
        "first_loss": _mean(result.losses[:max(1, len(result.losses) // 10)]),
        "final_loss": _mean(result.losses[-max(1, len(result.losses) // 10):]),
        "best_miou": result.best_miou, "param_digests": digests,
        "best_iteration": result.best_iteration, "selected": chosen,
        "wall_s": round(result.wall_s, 2), "work_dir": str(work), "classes": classes.names,
        "reinitialized": notes.get("reinitialized", []),
        "trainable_params": notes["trainable_params"], "world_size": world, "rank": rank,
        "descriptor_stats": stats, "losses": result.losses,
    }
    return summary


def _mean(values: Sequence[float]) -> Optional[float]:
    return round(float(np.mean(values)), 6) if len(values) else None


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) of every parameter's float32 bytes, in state-dict order."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def rank_digests(model: torch.nn.Module) -> list[str]:
    """Every rank's parameter digest (one entry without torchrun); RuntimeError if ranks
    diverged, which DDP must never let happen."""
    import torch.distributed as dist

    mine = parameter_digest(model)
    if not dist.is_initialized():
        return [mine]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    if len(set(out)) != 1:
        raise RuntimeError(f"ranks ended with different parameters: {out}")
    return out


def finetune(**kwargs) -> dict:
    """Fine-tune: backbone frozen unless ``unfreeze``; see :func:`run_training`."""
    return run_training(mode="finetune", **kwargs)
