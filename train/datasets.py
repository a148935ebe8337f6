"""Datasets of labelled scenes for the training loop: random crops, fixed tiles, batches.

An item is a dict of numpy arrays for one ``s`` x ``s`` window: x float32 [3, s, s] (the
model input in 0..1, core/scene/sar_io.py), phys float32 [s, s] (the channel the physical
descriptors see), valid bool [s, s] (False on nodata and past the scene edge) and target uint8
[s, s] (class indices, 255 = ignore, also where not valid). :class:`CropDataset` draws random crops for training
(train/crop_sampling.py; the crop and its augmentation depend only on (seed, index), so runs
are reproducible with any number of workers or ranks); :class:`TileDataset` reads fixed tiles
for validation. Scenes are opened through a :class:`SceneCache` that every data-loader worker
rebuilds for itself. :func:`collate` stacks items into torch tensors [B, ...].
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from rasterio.windows import Window

from ..core.errors import InputError
from ..core.scene import sar_io
from .classes import IGNORE_INDEX
from .crop_sampling import choose_window, crop_size, label_window, tiles_of
from .labelled_scenes import LabelledScene


class SceneCache:
    """Open scenes by path, at most ``size`` at a time (not pickled: workers reopen)."""

    def __init__(self, size: int = 32, **open_options):
        self.size = size
        self.options = open_options
        self._open: OrderedDict[Path, sar_io.SarScene] = OrderedDict()

    def get(self, path: Path, options: Optional[dict] = None) -> sar_io.SarScene:
        """The open scene of ``path``; ``options`` (its source's, e.g. a pooled stretch)
        override the cache's open options."""
        scene = self._open.get(path)
        if scene is None:
            opts = {**self.options, **(options or {})}
            if opts.get("bands"):      # a source's own bands replace a model's preference
                opts.pop("prefer", None)
            scene = sar_io.open_scene(path, **opts)
            self._open[path] = scene
            while len(self._open) > self.size:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(path)
        return scene

    def __getstate__(self):
        return {"size": self.size, "options": self.options, "_open": OrderedDict()}

    def close(self) -> None:
        """Close the scenes opened by this process."""
        for s in self._open.values():
            s.close()
        self._open.clear()


class CropDataset:
    """Random labelled crops for training: item ``i`` (any non-negative int; the sampler
    encodes the epoch as ``epoch * len + index``) is a dict of numpy arrays
    x float32 [3, s, s], phys float32 [s, s], valid bool [s, s], target uint8 [s, s] (255 =
    ignore); the crop and the augmentation depend only on (seed, i), so runs are reproducible
    with any number of workers or ranks.
    """

    def __init__(self, scenes: Sequence[LabelledScene], tile: int, augment=None, seed: int = 0,
                 crops_per_scene: Optional[int] = None, favour_labelled: float = 0.9,
                 **open_options):
        if not scenes:
            raise InputError("no labelled scenes to train on")
        self.scenes = list(scenes)
        self.size = crop_size(self.scenes, tile)
        self.augment = augment
        self.seed = int(seed)
        self.favour = favour_labelled
        if crops_per_scene is None:  # about one crop per tile-sized area of each scene
            crops_per_scene = max(1, round(np.mean([s.width * s.height for s in self.scenes])
                                           / self.size ** 2))
        self.crops_per_scene = int(crops_per_scene)
        self.cache = SceneCache(**open_options)
        w = np.array([s.weight for s in self.scenes], np.float64)
        self.cum_weights = None if np.all(w == w[0]) else np.cumsum(w / w.sum())

    def __len__(self) -> int:
        return len(self.scenes) * self.crops_per_scene

    def scene_for(self, i: int, rng: np.random.Generator) -> LabelledScene:
        """Item i's scene: round robin when all weights are equal, else drawn by weight."""
        if self.cum_weights is None:
            return self.scenes[int(i) % len(self.scenes)]
        k = int(np.searchsorted(self.cum_weights, rng.random(), side="right"))
        return self.scenes[min(k, len(self.scenes) - 1)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(i)])
        scene = self.scene_for(i, rng)
        window = choose_window(scene, self.size, rng, self.favour)
        data = self.cache.get(scene.image, scene.options).read_window(window)
        target = label_window(scene.labels, window)
        target[~data.valid] = IGNORE_INDEX
        sample = {"x": data.x, "phys": data.phys, "valid": data.valid, "target": target}
        if self.augment is not None:
            sample = self.augment(sample, rng, self.cache.get(scene.image, scene.options))
        sample["index"] = int(i)   # the batch's scale-jitter factor (train/scale_jitter.py) draws on it
        return sample


class TileDataset:
    """Fixed tiles (no augmentation) for validation and descriptor statistics: item i is the
    i-th tile of :func:`~.crop_sampling.tiles_of` over all scenes; same dict as :class:`CropDataset`."""

    def __init__(self, scenes: Sequence[LabelledScene], tile: int, **open_options):
        self.scenes = list(scenes)
        self.size = crop_size(self.scenes, tile)
        self.items = [(k, w) for k, s in enumerate(self.scenes) for w in tiles_of(s, self.size)]
        self.cache = SceneCache(**open_options)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, window = self.items[int(i)]
        scene = self.scenes[k]
        window = Window(window.col_off, window.row_off, self.size, self.size)
        data = self.cache.get(scene.image, scene.options).read_window(window)
        target = label_window(scene.labels, window)
        target[~data.valid] = IGNORE_INDEX
        return {"x": data.x, "phys": data.phys, "valid": data.valid, "target": target}


def collate(samples: list[dict[str, Any]], jitter=None):
    """A list of sample dicts -> dict of torch tensors (x [B,3,s,s], phys, valid, target long);
    ``jitter`` (train/scale_jitter.py ScaleJitter) multilooks the batch's crops first."""
    import torch

    if jitter is not None:
        samples = jitter(samples)
    return {
        "x": torch.from_numpy(np.stack([s["x"] for s in samples])),
        "phys": torch.from_numpy(np.stack([s["phys"] for s in samples])),
        "valid": torch.from_numpy(np.stack([s["valid"] for s in samples])),
        "target": torch.from_numpy(np.stack([s["target"] for s in samples]).astype(np.int64)),
    }
