"""training/adaptation.py: which weights learn at test time, the decay toward the checkpoint, the choice of steps."""
import pytest
import torch

from tests.models.test_contract import build, cores
from training.adaptation import DecayToward, best_steps, set_trainable

IO_NAMES = {"model.inner.embed_tokens.embedding_weight", "model.inner.lm_head.weight", "model.inner.q_head.weight",
            "model.inner.q_head.bias"}


@cores()
def test_every_core_has_the_io_layers_and_dense_means_every_weight(path):
    model = build(path)
    chosen = set_trainable(model, ["embeddings", "io"])
    assert {name for name, p in model.named_parameters() if p.requires_grad} == IO_NAMES
    assert len(chosen) == 4
    everything = set_trainable(model, ["embeddings", "dense"])
    assert len(everything) == len(list(model.parameters())) and all(p.requires_grad for p in model.parameters())
    assert set_trainable(model, ["embeddings"]) == [] and not any(p.requires_grad for p in model.parameters())


def test_decay_toward_the_checkpoint_by_hand():
    weight = torch.nn.Parameter(torch.tensor([1.0, 3.0]))
    decay = DecayToward([weight], weight_decay=0.2)  # anchors: the values now
    with torch.no_grad():
        weight.copy_(torch.tensor([2.0, 1.0]))  # as if the optimizer had moved them
    decay.param_groups[0]["lr"] = 0.5
    decay.step()  # w - 0.5 * 0.2 * (w - anchor) = w - 0.1 * ([2, 1] - [1, 3])
    assert torch.allclose(weight.detach(), torch.tensor([1.9, 1.2]))
    decay.param_groups[0]["lr"] = 0.0
    decay.step()
    assert torch.allclose(weight.detach(), torch.tensor([1.9, 1.2]))


@pytest.mark.parametrize("scores, expected", [
    ({50: (0.5, 0.9, 1.0), 200: (0.5, 0.95, 2.0), 1000: (0.25, 0.99, 0.1)}, 200),  # exact, then cell accuracy
    ({50: (1.0, 1.0, 0.3), 200: (1.0, 1.0, 0.1), 1000: (1.0, 1.0, 0.2)}, 200),    # then the lower loss
    ({0: (0.0, 0.6, 1.0), 50: (0.0, 0.6, 1.0), 200: (0.0, 0.6, 1.0)}, 0),         # a full tie: the fewest steps
    ({50: (0.2, 0.1, 0.0), 1000: (0.4, 0.1, 9.0)}, 1000),
])
def test_best_steps(scores, expected):
    assert best_steps({n: {"exact": e, "cell": c, "loss": x} for n, (e, c, x) in scores.items()}) == expected
