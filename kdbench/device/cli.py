"""``kdbench device MODEL``: latency, throughput, FLOPs, memory and energy of one model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from kdbench.reporting import user_errors


def register(app: typer.Typer, name: str) -> None:
    """Add the ``device`` command to ``app``."""

    @app.command(name)
    @user_errors
    def device_command(
        model: str = typer.Argument(
            ...,
            help="A registered teacher or student (shapes-student), a timm architecture "
            "(timm:vit_small_patch14_dinov2.lvd142m, mobilevit_xs) or an open_clip model "
            "(open_clip:ViT-B-32).",
        ),
        img_size: int | None = typer.Option(
            None, "--img-size", help="Input size (default: the model's)."
        ),
        batch: int = typer.Option(32, "--batch", help="Batch size of the throughput window."),
        precision: str = typer.Option(
            "fp32,bf16,fp16,int8", "--precision", help="Comma-separated: fp32, bf16, fp16, int8."
        ),
        threads: int | None = typer.Option(
            None, "--threads", help="Threads to pin (default: physical cores available)."
        ),
        smoke: bool = typer.Option(
            False,
            "--smoke",
            help="64 queries and no minimum duration: seconds, not ranked figures.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        weights: Path | None = typer.Option(
            None, "--weights", help="Weights file (safetensors or a weights-only checkpoint)."
        ),
        device: str = typer.Option("auto", "--device", help="'auto', 'cpu', 'cuda', 'cuda:1'..."),
        sensor: str = typer.Option(
            "auto", "--sensor", help="Energy sensor: auto, none, or a name."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the input image pool."),
    ) -> None:
        """Measure one model as the device protocol does, outside a benchmark run.

        Example: kdbench device timm:vit_small_patch14_dinov2.lvd142m --img-size 224 --smoke
        """
        from kdbench.device.profile import format_profile, profile_model
        from kdbench.plugins import get_registry
        from kdbench.runtime import resolve_device

        profile = profile_model(
            get_registry(),
            model,
            img_size=img_size,
            batch_size=batch,
            precisions=precision,
            threads=threads,
            smoke=smoke,
            weights=weights,
            device=resolve_device(device),
            sensor=sensor,
            seed=seed,
            log=(lambda msg: typer.echo(msg, err=True)) if sys.stderr.isatty() else None,
        )
        if as_json:
            typer.echo(json.dumps(profile.as_dict(), indent=2))
        else:
            typer.echo(format_profile(profile))
