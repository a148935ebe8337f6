"""``ces models``: model files. ``ces models import-dinov2`` upcycles DINOv2 weights into a
CrossEarth-SAR MoE backbone (.safetensors)."""
from __future__ import annotations

from pathlib import Path

import click

VARIANT_CHOICE = click.Choice(["ti", "s", "b", "l", "g"])


@click.group("models")
def models() -> None:
    """Import and manage model files."""


@models.command("import-dinov2")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--variant", type=VARIANT_CHOICE, required=True,
              help="Size of the DINOv2 checkpoint (refused if it is another size).")
@click.option("--experts", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Experts per block; each is a copy of the DINOv2 FFN.")
@click.option("--top-k", "top_k", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Experts each token uses.")
@click.option("--paper-gate", is_flag=True,
              help="Paper-literal top-1 gate (constant 1: the task loss never trains the router) "
                   "instead of the straight-through gate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the router init.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output .safetensors file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def import_dinov2(checkpoint: Path, variant: str, experts: int, top_k: int, paper_gate: bool,
                  seed: int, output: Path, overwrite: bool) -> None:
    """Upcycle a DINOv2 CHECKPOINT into a physics-guided MoE backbone.

    Accepts the official DINOv2 .pth (e.g. dinov2_vitl14_pretrain.pth, registers detected)
    and HuggingFace Dinov2Model / Dinov2WithRegistersModel files (.safetensors or .bin).
    Pickled files are read with torch.load(weights_only=True): nothing in them is executed.

    \b
    Example:
      ces models import-dinov2 dinov2_vitl14_pretrain.pth --variant l --experts 6 -o init-l.safetensors
    """
    from ..core.atomic import check_writable
    from ..core.errors import InputError
    from ..core.models import checkpoints, dinov2_import
    from .model_description import describe

    if output.suffix.lower() != ".safetensors":
        raise InputError(f"{output}: the output must be a .safetensors file")
    if top_k > experts:
        raise InputError(f"--top-k {top_k} is larger than --experts {experts}")
    check_writable(output, overwrite)
    backbone = dinov2_import.import_dinov2(checkpoint, variant, experts=experts, top_k=top_k,
                                           straight_through=not paper_gate, seed=seed)
    checkpoints.save(backbone, output, imported_by="ces models import-dinov2")
    info = describe(output)
    click.echo(f"{checkpoint.name}: DINOv2 {variant} ({info['embed_dim']}-d, {info['blocks']} "
               f"blocks, {info['register_tokens']} registers, "
               f"{backbone.provenance['source_layout']} layout)")
    click.echo(f"{output}: {experts} experts, top-{top_k} ({info['gate']} gate); "
               f"{info['params_total_human']} parameters, {info['params_active_human']}")


@models.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp16",
              show_default=True, help="Storage precision of the floating-point tensors.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output .safetensors file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def convert(model: Path, dtype: str, output: Path, overwrite: bool) -> None:
    """Store a model file in another precision (e.g. fp16: half the size).

    The config, classes and training statistics are kept; loading always computes in
    float32.

    \b
    Example:
      ces models convert run.safetensors --dtype fp16 -o small.safetensors
    """
    from ..core.atomic import check_writable
    from ..core.errors import InputError
    from ..core.models import checkpoints

    if output.suffix.lower() != ".safetensors":
        raise InputError(f"{output}: the output must be a .safetensors file")
    check_writable(output, overwrite)
    module = checkpoints.load(model)
    checkpoints.save(module, output, dtype=dtype, converted_from=model.name)
    size_mb = output.stat().st_size / 1e6
    click.echo(f"{output}: {dtype}, {size_mb:.1f} MB")
