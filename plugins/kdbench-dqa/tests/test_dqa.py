import itertools

import pytest
import torch
from kdbench_dqa import DQA, DQA_2BIT, AttentionQuantAware
from kdbench_dqa.attention import AttentionQuantiser, attention_weights

from kdbench.quantization.training import QuantisedLayer, quantise_weight


def test_the_schedule_starts_even_and_ends_on_the_low_bit_quantiser():
    settings = AttentionQuantAware(bits=(16, 8, 4))
    logits = torch.zeros(3)
    assert torch.allclose(attention_weights(logits, 0.0, settings), torch.full((3,), 1 / 3))
    weights = [attention_weights(logits, t / 10, settings)[-1].item() for t in range(11)]
    assert all(b >= a for a, b in itertools.pairwise(weights))  # the low bit only gains
    assert weights[-1] == 1.0
    # even attention learned away from the low bit is overruled at the end
    against = torch.tensor([5.0, 0.0, -5.0])
    assert attention_weights(against, 0.5, settings)[-1] < 0.01
    assert torch.equal(attention_weights(against, 0.9, settings), torch.tensor([0.0, 0.0, 1.0]))


def test_a_layer_ends_training_on_the_low_bit_quantiser():
    settings = AttentionQuantAware(bits=(8, 4, 2))
    layer = QuantisedLayer(torch.nn.Linear(6, 3), AttentionQuantiser(settings, total_steps=10))
    layer.train()
    x = torch.randn(16, 6)
    for _ in range(10):
        out = layer(x)
        out.sum().backward()
    quantiser = layer.quantiser
    assert quantiser.progress == 1.0
    assert torch.equal(quantiser.mix(), torch.tensor([0.0, 0.0, 1.0]))
    # the layer now computes with the 2-bit weight alone
    assert torch.equal(quantiser.weight(layer.layer.weight), quantise_weight(layer.layer.weight, 2))
    assert quantiser.logits.grad is not None  # the attention was learned along the way


def test_the_methods_name_their_quantiser_and_register():
    from kdbench import plugins

    assert DQA.recipe.quantise.scored_at() == "int4-sim"
    assert DQA_2BIT.recipe.quantise.scored_at() == "int2-sim"
    assert DQA.recipe.as_dict()["quantise"]["bits"] == [16, 8, 4]
    with pytest.raises(ValueError):
        AttentionQuantAware(bits=(4, 8))
    plugins.reset()
    method = plugins.get_registry().get("methods", "dqa")
    assert method.distribution == "kdbench-dqa"
