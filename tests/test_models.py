"""Backbones over timm, local weights, adapters."""

import pytest
import torch
from safetensors.torch import save_file

from kdbench.models.adapters import ADAPTERS, LoRA, LoRALinear, SVFLinear
from kdbench.models.backbone import WeightsError, timm_backbone
from kdbench.world.models import build_vit

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def test_feature_api_shapes():
    b = timm_backbone("vit_tiny_patch16_224", pretrained=False, **TINY).eval()
    x = torch.rand(2, 3, 32, 32)
    f = b.features(x, tokens=True, layers=[0, -1])
    assert f.pooled.shape == (2, 32) and f.tokens.shape == (2, 32, 4, 4)
    assert [t.shape for t in f.layers] == [(2, 32, 4, 4)] * 2
    assert torch.allclose(f.pooled, b(x), atol=1e-6)
    assert b.describe()["grid_size"] == [4, 4] and b.embed_dim == 32
    # uint8 input and other sizes are normalised and resized inside
    assert b((x * 255).to(torch.uint8)).shape == (2, 32)
    assert b(torch.rand(2, 3, 48, 48)).shape == (2, 32)


def test_local_weights_load_through_the_timm_path(tmp_path):
    b = timm_backbone("vit_tiny_patch16_224", pretrained=False, **TINY).eval()
    for suffix in ("safetensors", "pt"):
        path = tmp_path / f"w.{suffix}"
        state = b.model.state_dict()
        save_file(state, str(path)) if suffix == "safetensors" else torch.save(state, path)
        again = timm_backbone("vit_tiny_patch16_224", weights=path, **TINY).eval()
        x = torch.rand(1, 3, 32, 32)
        assert torch.allclose(b(x), again(x))


def test_missing_or_unreachable_weights_say_what_to_do(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        timm_backbone("vit_tiny_patch16_224", weights=tmp_path / "missing.safetensors")
    # HF_HUB_OFFLINE=1 in tests: no hub attempt, the option that passes a local file
    with pytest.raises(WeightsError, match="--teacher timm:vit_tiny_patch16_224:weights=PATH"):
        timm_backbone("vit_tiny_patch16_224", **TINY)
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="could not be loaded"):
        timm_backbone("vit_tiny_patch16_224", weights=bad, **TINY)


def test_cnn_backbones_give_token_maps():
    b = timm_backbone("resnet18", pretrained=False, img_size=64).eval()
    f = b.features(torch.rand(1, 3, 64, 64), tokens=True, layers=[-2])
    assert f.tokens.shape == (1, 512, 2, 2) and f.layers[0].shape[1] == 256


def test_lora_and_svf_start_as_the_original_layer():
    base = torch.nn.Linear(8, 6)
    x = torch.randn(3, 8)
    assert torch.allclose(LoRALinear(base, r=2, alpha=2, dropout=0.0)(x), base(x))
    assert torch.allclose(SVFLinear(base)(x), base(x), atol=1e-5)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapters_choose_what_trains(name):
    b = build_vit("student")
    x = torch.rand(2, 3, 32, 32)
    before = b.eval()(x)
    ADAPTERS[name]().apply(b)
    trainable = {n for n, p in b.named_parameters() if p.requires_grad}
    expected = {
        "linear": lambda n: False,
        "multilayer": lambda n: False,
        "finetune": lambda n: True,
        "lora": lambda n: "lora_" in n,
        "svf": lambda n: n.endswith("singular"),
    }[name]
    assert trainable == {n for n, _ in b.named_parameters() if expected(n)}
    assert torch.allclose(b.eval()(x), before, atol=1e-4)


def test_lora_refuses_targets_that_do_not_exist():
    with pytest.raises(ValueError, match="no linear layer"):
        LoRA(targets=("query",)).apply(build_vit("student"))


def test_timm_info_lines_stay_out_of_a_root_handler_unless_verbose(tmp_path, monkeypatch):
    """open_clip logs through the root logger, which gives it a handler; the INFO lines timm
    raises while kdbench checks a checkpoint must not reach it (they did, in oneclass runs)."""
    import logging

    from safetensors.torch import save_file

    b = timm_backbone("vit_tiny_patch16_224", pretrained=False, **TINY)
    path = tmp_path / "w.safetensors"
    save_file(b.model.state_dict(), str(path))
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    root = logging.getLogger()
    handler = Keep(logging.NOTSET)
    root.addHandler(handler)
    try:
        monkeypatch.delenv("KDBENCH_VERBOSE", raising=False)
        timm_backbone("vit_tiny_patch16_224", weights=path, **TINY)
        assert not [r for r in seen if r.name.startswith("timm")]
        monkeypatch.setenv("KDBENCH_VERBOSE", "1")  # kdbench -v
        timm_backbone("vit_tiny_patch16_224", weights=path, **TINY)
        assert any(r.name.startswith("timm") and r.levelno == logging.INFO for r in seen)
    finally:
        root.removeHandler(handler)
    assert logging.getLogger("timm.models._builder").propagate  # restored
