"""LoRA adapters shared between a teacher and a smaller student of the same ViT family.

For every student block ``i`` mapped to teacher block ``j`` (the layer mapping), each LoRA
target (``qkv`` by default) of the student reads its low-rank matrices out of the teacher's
adapter of block ``j``, truncated to the student's width:

- ``A_student = A_teacher[:, :in_s]``: the first ``in_s`` input columns of the teacher's
  ``A`` (r x in_t);
- ``B_student``: the teacher's ``B`` (out_t x r) cut to ``out_s`` rows. For a fused ``qkv``
  projection the rows are three blocks (q, k, v), so the first ``out_s / 3`` rows *of each
  block* are kept, which keeps q with q, k with k and v with v (and, when the head widths
  agree, the student's heads with the teacher's first heads); other targets keep the first
  ``out_s`` rows.

The student holds no adapter parameters of its own: both models update the same tensors,
the student only the truncated corner of them. Teacher blocks outside the mapping keep an
adapter of their own. After training, :func:`detach_student` gives the student plain
:class:`~kdbench.models.adapters.LoRALinear` layers holding copies of its slices, so the two
models are independent again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models.adapters import LoRALinear
from kdbench.models.backbone import Backbone
from kdbench_slad import MAPPINGS


def layer_mapping(student_depth: int, teacher_depth: int, mapping: str = "even") -> list[int]:
    """The teacher block each student block shares its adapters with.

    ``first``: the teacher's first blocks (i -> i); ``last``: its last blocks
    (i -> teacher_depth - student_depth + i); ``even``: spread over the teacher's depth,
    first and last included (i -> round(i (teacher_depth - 1) / (student_depth - 1))).
    """
    if mapping not in MAPPINGS:
        raise ValueError(f"slad: mapping must be one of {', '.join(MAPPINGS)}, not {mapping!r}")
    if not 1 <= student_depth <= teacher_depth:
        raise ValueError(
            f"slad: the student ({student_depth} blocks) cannot be deeper than the teacher "
            f"({teacher_depth} blocks)"
        )
    if mapping == "first":
        return list(range(student_depth))
    if mapping == "last":
        return list(range(teacher_depth - student_depth, teacher_depth))
    if student_depth == 1:
        return [teacher_depth - 1]
    step = (teacher_depth - 1) / (student_depth - 1)
    return [math.floor(i * step + 0.5) for i in range(student_depth)]


def truncate_rows(b: torch.Tensor, rows: int, chunks: int = 1) -> torch.Tensor:
    """The first ``rows / chunks`` rows of each of ``b``'s ``chunks`` equal row blocks."""
    if b.shape[0] % chunks or rows % chunks:
        raise ValueError(f"slad: cannot split {b.shape[0]} and {rows} rows into {chunks} blocks")
    if chunks == 1:
        return b[:rows]
    per_teacher, per_student = b.shape[0] // chunks, rows // chunks
    return b.view(chunks, per_teacher, -1)[:, :per_student].reshape(rows, -1)


class SharedLoRALinear(nn.Module):
    """A student linear layer whose LoRA matrices are slices of a teacher's
    :class:`LoRALinear`: ``base(x) + dropout(x) A_s^T B_s^T · alpha / r``.

    The teacher's adapter is referenced, not registered as a submodule: the teacher owns the
    parameters (one copy in the optimiser, in ``state_dict`` and on the device).
    """

    def __init__(
        self, base: nn.Linear, source: LoRALinear, chunks: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if base.in_features > source.in_features or base.out_features > source.out_features:
            raise ValueError(
                f"slad: the student layer ({base.in_features} -> {base.out_features}) is wider "
                f"than the teacher's ({source.in_features} -> {source.out_features})"
            )
        truncate_rows(source.lora_b, base.out_features, chunks)  # checks the block split
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self._source = [source]  # a list, so that nn.Module does not register it
        self.chunks = chunks
        self.scaling = source.scaling
        self.dropout_p = dropout
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def source(self) -> LoRALinear:
        return self._source[0]

    def lora_a(self) -> torch.Tensor:
        return self.source.lora_a[:, : self.base.in_features]

    def lora_b(self) -> torch.Tensor:
        return truncate_rows(self.source.lora_b, self.base.out_features, self.chunks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_a()), self.lora_b())
        return self.base(x) + update * self.scaling

    def detached(self) -> LoRALinear:
        """A plain LoRA layer holding copies of this layer's current slices."""
        r = self.source.lora_a.shape[0]
        lora = LoRALinear(self.base, r, alpha=self.scaling * r, dropout=self.dropout_p)
        lora.to(self.base.weight.device)
        with torch.no_grad():
            lora.lora_a.copy_(self.lora_a())
            lora.lora_b.copy_(self.lora_b())
        return lora


def _blocks(backbone: Backbone) -> nn.ModuleList:
    blocks = getattr(backbone.model, "blocks", None)
    if blocks is None:
        raise ValueError(
            f"slad needs ViT backbones with transformer blocks; {backbone.name} has none"
        )
    return blocks


def share_lora(
    teacher: Backbone,
    student: Backbone,
    mapping: str = "even",
    targets: Sequence[str] = ("qkv",),
    dropout: float = 0.0,
) -> list[tuple[int, int]]:
    """Make the student's ``targets`` layers read the teacher's LoRA adapters (already
    applied to ``teacher``) through the layer mapping; returns the (student block, teacher
    block) pairs. The student's other parameters are left as they are."""
    t_blocks, s_blocks = _blocks(teacher), _blocks(student)
    pairs = list(enumerate(layer_mapping(len(s_blocks), len(t_blocks), mapping)))
    shared = 0
    for s_index, t_index in pairs:
        for name, module in t_blocks[t_index].named_modules():
            if not isinstance(module, LoRALinear) or name.split(".")[-1] not in targets:
                continue
            parent_name, _, child = name.rpartition(".")
            parent = (
                s_blocks[s_index].get_submodule(parent_name) if parent_name else s_blocks[s_index]
            )
            base = getattr(parent, child, None)
            if not isinstance(base, nn.Linear):
                raise ValueError(
                    f"slad: student block {s_index} has no linear layer {name!r} to share "
                    f"teacher block {t_index}'s adapter with"
                )
            chunks = 3 if child == "qkv" else 1
            setattr(parent, child, SharedLoRALinear(base, module, chunks, dropout))
            shared += 1
    if not shared:
        raise ValueError(
            f"slad: the teacher has no LoRA layers named {list(targets)} in its mapped blocks"
        )
    return pairs


def detach_student(student: Backbone) -> int:
    """Replace every shared layer of ``student`` by an independent LoRA copy; returns how
    many were replaced."""
    replaced = 0
    for module in list(student.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, SharedLoRALinear):
                setattr(module, child_name, child.detached())
                replaced += 1
    return replaced
