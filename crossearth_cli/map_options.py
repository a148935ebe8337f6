"""The options of the commands that make a map (``ces segment``, ``ces change``): the model,
the sliding windows, the side outputs (class raster, confidence raster, picture) and the
polygon clean-up. One decorator, so that both commands take the same options alike."""
from __future__ import annotations

from pathlib import Path

import click

from . import validate

#: the embedded default model, in models/ of the package (crossearth_cli.segment_cmd finds it)
DEFAULT_MODEL_NAME = "ces-s1-water.safetensors"

_OPTIONS = [
    click.option("--model", type=click.Path(path_type=Path), default=None,
                 help=f"Model checkpoint (.safetensors). Default: the embedded "
                      f"models/{DEFAULT_MODEL_NAME}."),
    click.option("--tile", type=validate.TILE, default=512, show_default=True,
                 help="Window size in pixels."),
    click.option("--overlap", type=validate.NON_NEGATIVE_INT, default=None,
                 help="Overlap of neighbouring windows in pixels (blended). Default: 128, or a "
                      "quarter of --tile when that is smaller."),
    click.option("--batch", type=validate.POSITIVE_INT, default=4, show_default=True,
                 help="Windows per forward pass (on the CPU split over min(batch, threads) "
                      "parallel streams)."),
    click.option("--device", default="auto", show_default=True,
                 help="auto (CUDA when present), cpu, cuda or cuda:N."),
    click.option("--raster", is_flag=False, flag_value="", default=None, metavar="[CLASSES.tif]",
                 help="Also write the class raster (uint8 class values, 255 nodata, COG, after "
                      "sieving). Without a value: <output>_classes.tif beside the vector."),
    click.option("--confidence", is_flag=False, flag_value="", default=None, metavar="[CONF.tif]",
                 help="Also write the confidence raster (float32 0..1 max class probability, "
                      "NaN nodata, COG). Without a value: <output>_confidence.tif."),
    click.option("--preview", is_flag=False, flag_value="", default=None, metavar="[PICTURE.png]",
                 help="Also write a PNG picture: the scene in grey, the classes in their colours "
                      "over it, a legend. Without a value: <output>_preview.png."),
    click.option("--min-area", type=validate.NON_NEGATIVE_FLOAT, default=None, metavar="M2",
                 help="Merge regions smaller than this (m²) into their largest neighbour. "
                      "Default: 4 pixels. 0: keep every pixel."),
    click.option("--simplify", type=validate.NON_NEGATIVE_FLOAT, default=None, metavar="M",
                 help="Coverage-preserving simplification tolerance in metres. Default: 3/4 "
                      "of a pixel. 0: exact pixel edges."),
]


def map_options(f):
    """--model --tile --overlap --batch --device --raster --confidence --preview --min-area
    --simplify."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f
