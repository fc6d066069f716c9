"""The suites as the site explains them: a line where a suite is named, and a section on
the suites page (the embedded one with a contact sheet of the Shapes world).

The Shapes world's numbers are read from :class:`kdbench.world.world.ShapesWorld`, and
each protocol's data and models per suite from its default configuration
(:meth:`.catalog.Catalog.about`), so the page follows the code. The contact sheet is
``static/shapes-world.png``, drawn by ``kdbench world preview`` (a test checks that it
still shows the current world).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

#: The contact sheet of the Shapes world, as a site path (a vendored static file).
CONTACT_SHEET = "static/shapes-world.png"


@dataclass(frozen=True)
class SuiteInfo:
    """A suite: a one-line summary and a few paragraphs (:mod:`.prose` Markdown)."""

    name: str
    summary: str
    explanation: str
    image: str | None = None
    image_alt: str = ""


@functools.cache
def _embedded() -> SuiteInfo:
    from kdbench.world.world import ShapesWorld

    world = ShapesWorld()
    base, novel, down = (len(world.classes(s)) for s in ("base", "novel", "downstream"))
    size = world.image_size
    return SuiteInfo(
        name="embedded",
        summary=(
            "the Shapes world: synthetic images generated in-process, with small Shapes "
            "foundation models trained by kdbench; runs on any CPU in minutes"
        ),
        explanation=f"""\
The embedded suite runs every protocol for real on a CPU, in minutes, without downloading
anything. Its data is the **Shapes world** (version {world.version}): procedurally rendered
{size}×{size} images of objects that are a shape × a colour × a pattern ("striped red
star"), with random size, rotation, position, colour jitter and background clutter, and
scenes of several objects with pixel masks for segmentation. The world is deterministic:
the same seed gives the same bytes.

Its {base + novel + down} classes sit in a four-level taxonomy (tone → colour → shape →
pattern) and are split like the real benchmarks: {base} **base** classes (pretraining and
distillation, like ImageNet), {novel} **novel** classes (few-shot episodes, like
miniImageNet's test classes) and {down} **downstream** classes shown with a domain shift
(textured backgrounds, colour casts, noise) for task-specific distillation.

Its foundation models are small ViTs that kdbench trains on the base classes and ships: a
teacher, a student of the same family, and an image–text model for zero-shot scoring;
`kdbench world pretrain` remakes them. The numbers are a fast, honest test of a method,
not a claim about real images: rank methods on the standard suite for that.""",
        image=CONTACT_SHEET,
        image_alt=(
            "Samples of the Shapes world: base, novel and downstream classes with their names, "
            "then segmentation scenes beside their masks"
        ),
    )


_STANDARD = SuiteInfo(
    name="standard",
    summary=(
        "real datasets on disk and real foundation models (DINOv2 via timm, CLIP via "
        "open_clip); runs on GPUs"
    ),
    explanation="""\
The standard suite asks the same questions of real data and real foundation models: the
datasets are read from disk in their published layouts (nothing is downloaded at run
time), the teachers and students come from timm and open_clip (DINOv2, CLIP, MobileViT) or
a local checkpoint, and the budgets are sized for GPUs. The table below lists the data and
models each protocol uses by default; any of them can be changed with `--set`, and the
record says what was used.""",
)


def suite_info(name: str) -> SuiteInfo | None:
    """The explanation of suite ``name``; None for a suite kdbench does not know."""
    if name == "embedded":
        return _embedded()
    if name == "standard":
        return _STANDARD
    return None
