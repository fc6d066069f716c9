"""Layer-group distillation in the style of SKILL (Zampierin et al., "SKILL: Similarity-aware
Knowledge distILLation for Speech Self-Supervised Learning", ICASSP workshops 2024,
arXiv 2402.16830)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses import DistillationLoss, LossShapes
from kdbench.models.backbone import Features
from kdbench_losses.cka import flatten_tokens, linear_cka

LINKAGES = ("average", "complete", "single")
TARGETS = ("mean", "medoid")


def layer_rows(layer: torch.Tensor, max_rows: int) -> torch.Tensor:
    """A layer's output as (rows, width): every token of a (B, D, h, w) map, or the (B, D)
    vectors; at most ``max_rows`` rows, evenly strided."""
    rows = (
        layer.flatten(2).transpose(1, 2).reshape(-1, layer.shape[1]) if layer.ndim == 4 else layer
    )
    stride = max(1, -(-rows.shape[0] // max_rows))
    return rows[::stride].float()


def similarity_matrix(layers: Sequence[torch.Tensor], max_rows: int = 4096) -> torch.Tensor:
    """Linear CKA between every pair of layers, computed on the same examples."""
    rows = [layer_rows(x, max_rows) for x in layers]
    n = len(rows)
    sim = torch.eye(n, dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            sim[i, j] = sim[j, i] = float(linear_cka(rows[i], rows[j]))
    return sim


def agglomerate(similarity: torch.Tensor, groups: int, linkage: str = "average") -> list[list[int]]:
    """Agglomerative (hierarchical) clustering of the layers into ``groups`` clusters: start
    from one cluster per layer and repeatedly merge the two most similar clusters, where the
    similarity of two clusters is the mean (``average``), minimum (``complete``) or maximum
    (``single``) similarity between their members; ties merge the lowest layer indices.
    Clusters come back ordered by their mean layer index."""
    if linkage not in LINKAGES:
        raise ValueError(f"skill: linkage must be one of {', '.join(LINKAGES)}, not {linkage!r}")
    n = similarity.shape[0]
    if not 1 <= groups <= n:
        raise ValueError(f"skill: cannot cluster {n} layers into {groups} groups")
    reduce = {"average": torch.mean, "complete": torch.min, "single": torch.max}[linkage]
    clusters = [[i] for i in range(n)]
    while len(clusters) > groups:
        best, pair = None, (0, 1)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                value = float(reduce(similarity[clusters[a]][:, clusters[b]]))
                if best is None or value > best:
                    best, pair = value, (a, b)
        a, b = pair
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    return sorted(clusters, key=lambda c: (sum(c) / len(c), c[0]))


def medoid(similarity: torch.Tensor, members: Sequence[int]) -> int:
    """The member most similar, in total, to the others of its group."""
    sub = similarity[list(members)][:, list(members)]
    return list(members)[int(sub.sum(1).argmax())]


def distilhubert_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """DistilHuBERT's per-layer objective on (rows, D) features: mean over rows of
    ``||s - t||_1 / D - log sigmoid(cos(s, t))``."""
    l1 = (student - teacher).abs().mean(-1)
    cos = F.cosine_similarity(student, teacher, dim=-1)
    return (l1 - F.logsigmoid(cos)).mean()


def evenly(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``, first and last included."""
    if count == 1:
        return [total - 1]
    return [round(i * (total - 1) / (count - 1)) for i in range(count)]


class SKILLLoss(DistillationLoss):
    """SKILL-style layer-group distillation: the teacher's layers are clustered by the
    similarity of their outputs (linear CKA, agglomerative clustering) into as many groups
    as student layers are distilled; each group's representative - the mean of its layers'
    token maps (``target="mean"``, what SKILL distils) or its medoid layer
    (``target="medoid"``) - is regressed from one student layer through a 1x1 projector,
    with DistilHuBERT's objective ``||P s - t||_1 / D - log sigmoid(cos(P s, t))`` per token,
    averaged over tokens and groups. Groups, ordered by their mean teacher depth, go to
    student layers spread evenly over its depth (all of them when ``groups`` is the student's
    depth, the default).

    The similarity matrix is computed once, on the teacher's layers for the first training
    batch (up to ``probe_rows`` token rows), since a loss is built before it sees the teacher;
    the clustering is kept in the loss's state (``assignment``, saved with checkpoints).
    ``partition`` fixes the groups instead, e.g. ``[[0, 1], [2, 3], [4], [5]]``. Each student
    layer has its own projector from that layer's width (``LossShapes.student_layer_dims``:
    a CNN's widths grow with depth), and its map is resized to the teacher's grid; the
    teacher's layers must have its embedding width (true of ViTs), else a clear error.
    """

    name = "skill"
    requires = frozenset({"student.layers", "teacher.layers"})

    def __init__(
        self,
        shapes: LossShapes,
        groups: int | None = None,
        target: str = "mean",
        linkage: str = "average",
        partition: Sequence[Sequence[int]] | None = None,
        probe_rows: int = 4096,
    ) -> None:
        super().__init__(shapes)
        if shapes.teacher_dim is None:
            raise ValueError("skill needs a teacher")
        if target not in TARGETS:
            raise ValueError(f"skill: target must be one of {', '.join(TARGETS)}, not {target!r}")
        if linkage not in LINKAGES:
            raise ValueError(
                f"skill: linkage must be one of {', '.join(LINKAGES)}, not {linkage!r}"
            )
        n_t, n_s = shapes.teacher_layers, shapes.student_layers
        if partition is not None:
            partition = [sorted(int(i) for i in group) for group in partition]
            flat = sorted(i for group in partition for i in group)
            if flat != list(range(n_t)):
                raise ValueError(
                    f"skill: partition must split the teacher's layers 0..{n_t - 1} into "
                    f"groups, each layer once; got {partition}"
                )
            groups = len(partition)
        groups = groups or min(n_s, n_t)
        if not 1 <= groups <= min(n_s, n_t):
            raise ValueError(
                f"skill: groups must be between 1 and {min(n_s, n_t)} (student depth "
                f"{n_s}, teacher depth {n_t}), got {groups}"
            )
        self.groups, self.target, self.linkage = groups, target, linkage
        self.probe_rows = probe_rows
        self.student_indices = evenly(groups, n_s)
        self.projectors = nn.ModuleList(
            nn.Conv2d(shapes.student_layer_dim(i), shapes.teacher_dim, kernel_size=1)
            for i in self.student_indices
        )
        self.register_buffer("assignment", torch.full((n_t,), -1, dtype=torch.long))
        self.register_buffer("representative", torch.full((groups,), -1, dtype=torch.long))
        self.register_buffer("similarity", torch.zeros(n_t, n_t, dtype=torch.float64))
        if partition is not None:
            self._set_groups(partition, None)

    def student_layer_indices(self) -> list[int]:
        return list(self.student_indices)

    def teacher_layer_indices(self) -> list[int]:
        return list(range(self.shapes.teacher_layers))

    # -- grouping --------------------------------------------------------------------------
    @property
    def clustered(self) -> bool:
        return bool((self.assignment >= 0).all())

    def partition(self) -> list[list[int]]:
        """The teacher layer groups, in the order of the student layers they go to."""
        return [
            [int(i) for i in torch.nonzero(self.assignment == g).flatten()]
            for g in range(self.groups)
        ]

    def _set_groups(self, groups: list[list[int]], similarity: torch.Tensor | None) -> None:
        for g, members in enumerate(groups):
            self.assignment[members] = g
            if similarity is not None:
                self.representative[g] = medoid(similarity, members)
        if similarity is not None:
            self.similarity.copy_(similarity)

    @torch.no_grad()
    def cluster(self, teacher_layers: Sequence[torch.Tensor]) -> list[list[int]]:
        """Group the teacher's layers from their outputs on one batch (a fixed
        ``partition`` stays; only its medoids are computed); returns the groups."""
        similarity = similarity_matrix(teacher_layers, self.probe_rows)
        if self.clustered:
            groups = self.partition()
        else:
            groups = agglomerate(similarity, self.groups, self.linkage)
        self._set_groups(groups, similarity.to(self.similarity.device))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in (self.assignment, self.representative, self.similarity):
                torch.distributed.broadcast(buffer, src=0)  # every rank uses rank 0's groups
        return self.partition()

    # -- loss ------------------------------------------------------------------------------
    def forward(
        self, student: Features, teacher: Features | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        t_layers = teacher.layers
        if not self.clustered or bool((self.representative < 0).any()):
            self.cluster(t_layers)
        total = student.layers[0].sum() * 0.0
        for g, (projector, s_map) in enumerate(zip(self.projectors, student.layers)):
            if s_map.ndim != 4 or s_map.shape[1] != projector.in_channels:
                raise ValueError(
                    f"skill: student layer {self.student_indices[g]} has shape "
                    f"{tuple(s_map.shape)}; its projector was built for (B, "
                    f"{projector.in_channels}, h, w) maps (LossShapes.student_layer_dims)"
                )
            members = [i for i in range(len(t_layers)) if int(self.assignment[i]) == g]
            if self.target == "mean":
                target = torch.stack([t_layers[i].float() for i in members]).mean(0)
            else:
                target = t_layers[int(self.representative[g])].float()
            if target.shape[1] != projector.out_channels:
                raise ValueError(
                    f"skill: teacher layer outputs have width {target.shape[1]}, not the "
                    f"embedding width {projector.out_channels} (ViT-like teachers only)"
                )
            s_rows, t_rows = flatten_tokens(projector(s_map.float()), target)
            total = total + distilhubert_loss(s_rows, t_rows)
        return total / self.groups
