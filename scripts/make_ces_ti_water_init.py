"""The random initialization of the embedded model ces-ti-water (models/README.md).

Variant ti (192-d, 12 blocks, 3 heads) with 6 experts per block and top-1 routing; each
expert's FFN is 192 wide (instead of ti's 768) and the head has 20 queries, so that the fp16
file stays under 25 MB. Classes background / water as labelled in OMBRIA (0 / 255); the
model reads the VV band of dual-pol scenes (``input.bands``).

    .venv/bin/python scripts/make_ces_ti_water_init.py init.safetensors [SEED]

SEED (default 0) seeds torch's generator, so the same command gives the same file.
"""
import sys

import torch

from crossearth_sar.core.models import checkpoints, model

CLASSES = [{"name": "background", "value": 0, "color": "#d9d9d9"},
           {"name": "water", "value": 255, "color": "#1f78b4"}]


def main(path: str, seed: int = 0) -> None:
    torch.manual_seed(seed)
    m = model.build("ti", classes=CLASSES, experts=6, top_k=1, num_queries=20,
                    num_points=4096, ffn_hidden_dim=192, bands=["VV"])
    checkpoints.save(m, path, recipe=f"random init (seed {seed}): variant ti, 6 experts, top-1, 20 queries")
    print(f"{path}: {sum(p.numel() for p in m.parameters()):,} parameters")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
