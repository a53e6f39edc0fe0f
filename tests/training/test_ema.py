"""utils/ema.py: the moving average of weights and floating-point buffers, applied and restored."""
import torch
from torch import nn

from training.ema import ModelEMA


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.register_buffer("table", torch.tensor([4.0]))
        self.register_buffer("ids", torch.tensor([7]))  # integer: not averaged


def test_update_apply_and_restore_by_hand():
    model = Tiny()
    ema = ModelEMA(model, rate=0.75)
    assert set(ema.shadow) == {"weight", "table"}
    with torch.no_grad():
        model.weight.copy_(torch.tensor([3.0, 6.0]))
        model.table.fill_(0.0)
    ema.update(model)  # 0.75 * old + 0.25 * new
    assert torch.equal(ema.shadow["weight"], torch.tensor([1.5, 3.0]))
    assert torch.equal(ema.shadow["table"], torch.tensor([3.0]))
    ema.update(model)
    assert torch.equal(ema.shadow["weight"], torch.tensor([1.875, 3.75]))
    with ema.applied_to(model):
        assert torch.equal(model.weight, torch.tensor([1.875, 3.75])) and model.table.item() == 2.25
    assert torch.equal(model.weight, torch.tensor([3.0, 6.0])) and model.table.item() == 0.0  # raw again


def test_load_state_dict_takes_the_averaged_entries_of_a_model_file():
    source, target = ModelEMA(Tiny(), 0.9), ModelEMA(Tiny(), 0.9)
    state = {"weight": torch.tensor([5.0, 5.0]), "table": torch.tensor([1.0]), "ids": torch.tensor([7])}
    target.load_state_dict(state)
    assert torch.equal(target.shadow["weight"], state["weight"]) and torch.equal(target.shadow["table"], state["table"])
    assert torch.equal(source.shadow["weight"], torch.tensor([1.0, 2.0]))
