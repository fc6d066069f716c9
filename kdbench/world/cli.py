"""``kdbench world``: look at the Shapes world and (re)make its foundation models."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from kdbench.reporting import user_errors

world_app = typer.Typer(
    help="The embedded suite's Shapes world: preview it, (re)train its models.",
    no_args_is_help=True,
)


@world_app.command("preview")
@user_errors
def preview_command(
    out: Path = typer.Option(Path("shapes-preview.png"), "--out", "-o", help="PNG to write."),
    seed: int = typer.Option(0, help="Which samples to draw."),
) -> None:
    """Write a contact sheet of samples (with class names) and scenes with masks.

    Example: kdbench world preview --out shapes.png
    """
    from kdbench.world.preview import write_preview

    path = write_preview(out, seed)
    typer.echo(f"wrote {path}")


@world_app.command("pretrain")
@user_errors
def pretrain_command(
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for the weights (default: the kdbench cache)."
    ),
    smoke: bool = typer.Option(False, "--smoke", help="Seconds-long training, for testing."),
    device: str = typer.Option("auto", help="'auto', 'cpu', 'cuda'..."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress"),
    student: list[str] = typer.Option(
        None,
        "--student",
        help="Pretrain this registered student (repeatable; `kdbench ls students`) instead of "
        "the world's own models.",
    ),
) -> None:
    """Train the Shapes teacher, student and text tower on the base split.

    Writes teacher.safetensors, student.safetensors, text.safetensors and manifest.json.
    With --student, trains those students from random weights the way the Shapes student is
    trained, as NAME.safetensors beside them (added to the manifest). Models in the cache
    are used instead of the ones shipped with kdbench.

    Example: kdbench world pretrain --device cuda
    Example: kdbench world pretrain --student shapes-mobilevit
    """
    from kdbench.runtime import make_progress, resolve_device
    from kdbench.world.pretrain import PretrainConfig, pretrain, pretrain_students

    config = PretrainConfig.smoke() if smoke else PretrainConfig()
    options = {
        "device": resolve_device(device),
        "progress": make_progress(progress),
        "log": lambda m: typer.echo(m, err=True),
    }
    if student:
        from kdbench.plugins import get_registry

        manifest = pretrain_students(list(student), get_registry(), out, config, **options)
    else:
        manifest = pretrain(out, config, **options)
    typer.echo(json.dumps(manifest["models"], indent=2))


@world_app.command("info")
@user_errors
def info_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the world's version, splits, and which model weights are in use.

    Example: kdbench world info
    """
    from kdbench.models.backbone import WeightsError
    from kdbench.world import ShapesWorld
    from kdbench.world.models import find_weights
    from kdbench.world.taxonomy import LEVELS

    world = ShapesWorld()
    info: dict = {
        "version": world.version,
        "classes": len(world.taxonomy),
        "taxonomy_levels": list(LEVELS),
        "splits": {s: len(world.classes(s)) for s in ("base", "novel", "downstream")},
        "image_size": world.image_size,
        "scene_size": world.scene_size,
        "weights": {},
    }
    for name in ("teacher", "student", "text"):
        try:
            info["weights"][name] = str(find_weights(name))
        except WeightsError as error:
            info["weights"][name] = f"missing: {error}"
    manifest = Path(info["weights"]["teacher"]).with_name("manifest.json")
    if manifest.is_file():
        info["manifest"] = json.loads(manifest.read_text())["models"]
    typer.echo(json.dumps(info, indent=2) if as_json else _format(info))


def _format(info: dict) -> str:
    lines = [
        f"Shapes world v{info['version']}: {info['classes']} classes "
        f"({', '.join(f'{k} {v}' for k, v in info['splits'].items())}), "
        f"images {info['image_size']} px, scenes {info['scene_size']} px",
        f"taxonomy: root -> {' -> '.join(info['taxonomy_levels'])}",
    ]
    lines += [f"{k} weights: {v}" for k, v in info["weights"].items()]
    for name, stats in info.get("manifest", {}).items():
        shown = ", ".join(f"{k}={v}" for k, v in stats.items() if k != "sha256")
        lines.append(f"  {name}: {shown}")
    return "\n".join(lines)


def register(app: typer.Typer, name: str) -> None:
    app.add_typer(world_app, name=name)
