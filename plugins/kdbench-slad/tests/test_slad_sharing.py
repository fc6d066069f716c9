import pytest
import torch
from kdbench_slad.sharing import (
    SharedLoRALinear,
    detach_student,
    layer_mapping,
    share_lora,
    truncate_rows,
)

from kdbench.models.adapters import LoRA, LoRALinear
from kdbench.world.models import build_vit


def test_layer_mappings_for_the_embedded_pair_and_errors():
    assert layer_mapping(4, 6, "first") == [0, 1, 2, 3]
    assert layer_mapping(4, 6, "last") == [2, 3, 4, 5]
    assert layer_mapping(4, 6, "even") == [0, 2, 3, 5]
    assert layer_mapping(12, 12, "even") == list(range(12))
    assert layer_mapping(1, 6, "even") == [5]
    with pytest.raises(ValueError, match="mapping must be"):
        layer_mapping(4, 6, "middle")
    with pytest.raises(ValueError, match="cannot be deeper"):
        layer_mapping(7, 6)


def test_truncation_keeps_the_first_rows_of_each_qkv_block():
    b = torch.arange(12.0).view(12, 1)  # q = rows 0-3, k = 4-7, v = 8-11
    assert truncate_rows(b, 6, chunks=3).flatten().tolist() == [0, 1, 4, 5, 8, 9]
    assert truncate_rows(b, 5).flatten().tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="blocks"):
        truncate_rows(b, 5, chunks=3)


def make_pair():
    torch.manual_seed(0)
    teacher = LoRALinear(torch.nn.Linear(8, 24), r=2, alpha=4.0, dropout=0.0)
    torch.nn.init.normal_(teacher.lora_b)
    student = SharedLoRALinear(torch.nn.Linear(4, 12), teacher, chunks=3)
    return teacher, student


def test_the_student_layer_computes_base_plus_the_truncated_teacher_update():
    teacher, student = make_pair()
    x = torch.randn(5, 4)
    rows = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]  # first 4 of each 8-row q/k/v block
    a, b = teacher.lora_a[:, :4], teacher.lora_b[rows]
    direct = student.base(x) + x @ a.T @ b.T * (4.0 / 2)
    assert torch.allclose(student(x), direct, atol=1e-6)
    assert not [p for p in student.parameters() if p.requires_grad]  # nothing of its own


def test_student_gradients_reach_only_the_shared_corner_of_the_teachers_matrices():
    teacher, student = make_pair()
    student(torch.randn(3, 4)).sum().backward()
    grad_a, grad_b = teacher.lora_a.grad, teacher.lora_b.grad
    assert grad_a[:, :4].abs().sum() > 0 and grad_a[:, 4:].abs().sum() == 0
    shared = torch.zeros(24, dtype=torch.bool)
    shared[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]] = True
    assert grad_b[shared].abs().sum() > 0 and grad_b[~shared].abs().sum() == 0


def test_sharing_between_shapes_vits_and_detaching_afterwards():
    teacher, student = build_vit("teacher"), build_vit("student")
    LoRA(r=4, alpha=4, dropout=0.0).apply(teacher)
    student.requires_grad_(False)
    pairs = share_lora(teacher, student, "even")
    assert pairs == [(0, 0), (1, 2), (2, 3), (3, 5)]
    for s_index, t_index in pairs:
        shared = student.model.blocks[s_index].attn.qkv
        assert isinstance(shared, SharedLoRALinear)
        assert shared.source is teacher.model.blocks[t_index].attn.qkv
    assert not any("lora" in name for name in student.state_dict())  # the teacher owns them
    x = torch.rand(2, 3, 32, 32)
    before = student(x)
    with torch.no_grad():
        teacher.model.blocks[5].attn.qkv.lora_b.normal_()
    changed = student(x)
    assert not torch.allclose(before, changed)  # the teacher's adapter moves the student
    assert detach_student(student) == 4
    assert torch.allclose(student(x), changed, atol=1e-6)
    with torch.no_grad():
        teacher.model.blocks[5].attn.qkv.lora_b.zero_()
    assert torch.allclose(student(x), changed, atol=1e-6)  # independent copies now
    assert sum("lora_a" in name for name in student.state_dict()) == 4


def test_a_student_wider_than_the_teacher_is_refused():
    teacher = LoRALinear(torch.nn.Linear(4, 12), r=2, alpha=2.0, dropout=0.0)
    with pytest.raises(ValueError, match="wider"):
        SharedLoRALinear(torch.nn.Linear(8, 24), teacher, chunks=3)
