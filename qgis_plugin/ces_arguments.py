"""The ``ces`` command lines of the Processing algorithms, built from plain values (the way
QGIS's own GDAL algorithms build theirs in ``getConsoleCommands``): no qgis, no engine, so each
is unit-tested on its own (tests/qgis/test_qgis_arguments.py). An algorithm reads its dialog into
these values and runs the result with ``ces COMMAND ARGS --progress json``.

Each function returns the arguments after the command name, as strings. Optional values that
are None or "" are left out; ``calibrated`` is the ``--calibrated`` pair of
CesAlgorithm.calibrated_args (empty for auto).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence


def _options(pairs: Iterable[tuple[str, object]]) -> list:
    """``--flag value`` for each pair whose value is set (not None, not "")."""
    out: list = []
    for flag, value in pairs:
        if value is not None and value != "":
            out += [flag, value]
    return out


def _repeated(flag: str, values: Iterable[object]) -> list:
    out: list = []
    for value in values:
        out += [flag, value]
    return out


def _strings(args: list) -> list[str]:
    return [str(a) for a in args]


def segment_arguments(scene: str, output: str, *, tile: int, overlap: int, batch: int,
                      device: str, calibrated: Sequence[str] = (),
                      min_area: Optional[float] = None, simplify: Optional[float] = None,
                      model: Optional[str] = None, raster: Optional[str] = None,
                      confidence: Optional[str] = None, preview: Optional[str] = None) -> list[str]:
    """``ces segment SCENE -o OUT ...``."""
    return _strings([scene, "-o", output, "--tile", tile, "--overlap", overlap, "--batch", batch,
                     "--device", device, "--overwrite", *calibrated,
                     *_options([("--min-area", min_area), ("--simplify", simplify),
                                ("--model", model), ("--raster", raster),
                                ("--confidence", confidence), ("--preview", preview)])])


def change_arguments(after: str, befores: Sequence[str], output: str, *, tile: int,
                     overlap: int, batch: int, device: str, calibrated: Sequence[str] = (),
                     min_area: Optional[float] = None, simplify: Optional[float] = None,
                     model: Optional[str] = None, raster: Optional[str] = None,
                     confidence: Optional[str] = None, preview: Optional[str] = None) -> list[str]:
    """``ces change AFTER --before B [--before B ...] -o OUT ...``."""
    return _strings([after, *_repeated("--before", befores), "-o", output, "--tile", tile,
                     "--overlap", overlap, "--batch", batch, "--device", device, "--overwrite",
                     *calibrated,
                     *_options([("--min-area", min_area), ("--simplify", simplify),
                                ("--model", model), ("--raster", raster),
                                ("--confidence", confidence), ("--preview", preview)])])


def descriptors_arguments(scene: str, output: str, *, tile: int = 0, stride: int = 0,
                          calibrated: Sequence[str] = ()) -> list[str]:
    """``ces descriptors SCENE -o OUT ...``; a tile or stride of 0 lets ces choose."""
    return _strings([scene, "-o", output, "--overwrite", *calibrated,
                     *_options([("--tile", tile if tile > 0 else None),
                                ("--stride", stride if stride > 0 else None)])])


def evaluate_arguments(images: Sequence[str], labels: Sequence[str], output: str, plot: str, *,
                       tile: int, device: str, calibrated: Sequence[str] = (),
                       class_field: Optional[str] = None, model: Optional[str] = None,
                       classes: Optional[str] = None) -> list[str]:
    """``ces evaluate --images ... --labels ... --json OUT --experts-plot PLOT ...``."""
    return _strings([*_repeated("--images", images), *_repeated("--labels", labels),
                     "--json", output, "--experts-plot", plot, "--tile", tile,
                     "--device", device, "--overwrite", *calibrated,
                     *_options([("--class-field", class_field), ("--model", model),
                                ("--classes", classes)])])


def finetune_arguments(images: Sequence[str], labels: str, output: str, *, iters: int,
                       batch: int, lr: float, tile: int, device: str, model: str,
                       work_dir: str, resume: bool = False, calibrated: Sequence[str] = (),
                       class_field: Optional[str] = None, classes: Optional[str] = None,
                       peft: Sequence[str] = ()) -> list[str]:
    """``ces finetune --images ... --labels L -o OUT ...`` (``lr`` written exactly, repr)."""
    return _strings([*_repeated("--images", images), "--labels", labels, "-o", output,
                     "--iters", iters, "--batch", batch, "--lr", repr(lr), "--tile", tile,
                     "--device", device, "--model", model, "--overwrite", "--work-dir", work_dir,
                     *(["--resume"] if resume else []), *calibrated,
                     *_options([("--class-field", class_field), ("--classes", classes)]),
                     *peft])


#: ``ces prepare --resolution`` values -> the dialog's labels
RESOLUTION_OPTIONS = {"auto": "20 m (recommended)", "native": "native (10 m for IW)"}


def prepare_arguments(product: str, output: str, *, resolution: str = "auto") -> list[str]:
    """``ces prepare PRODUCT -o OUT --resolution R --overwrite``."""
    return _strings([product, "-o", output, "--resolution", resolution, "--overwrite"])
