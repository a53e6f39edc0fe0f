import math

import pytest
import torch

from models.common import compile_model, run_eagerly, trunc_normal_init_


@pytest.mark.parametrize("std", [1.0, 0.02, 1 / math.sqrt(512)])
def test_truncated_normal_has_requested_std(std):
    g = torch.Generator().manual_seed(0)
    t = trunc_normal_init_(torch.empty(1000, 1000), std=std, generator=g)
    assert t.std().item() == pytest.approx(std, rel=0.02)
    # Truncated at 2 std of the underlying normal, which is wider than `std` (JAX convention): ~2.27 std here.
    assert t.abs().max().item() <= 2 * std / math.sqrt(0.7737413) + 1e-6
    assert t.mean().item() == pytest.approx(0.0, abs=std * 0.01)


def test_torch_trunc_normal_is_narrower():
    """The reason we do not use torch.nn.init.trunc_normal_: its truncated std is ~12% below the request."""
    t = torch.nn.init.trunc_normal_(torch.empty(1000, 1000), std=1.0, a=-2.0, b=2.0,
                                    generator=torch.Generator().manual_seed(0))
    assert t.std().item() == pytest.approx(0.8796, rel=0.01)


def test_zero_std_gives_zeros():
    assert torch.count_nonzero(trunc_normal_init_(torch.ones(3, 3), std=0.0)) == 0


def test_seeded_generator_reproducible():
    a = trunc_normal_init_(torch.empty(10), generator=torch.Generator().manual_seed(3))
    b = trunc_normal_init_(torch.empty(10), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_importing_the_trainer_does_not_import_dynamo():
    """`run_eagerly` defers torch.compiler.disable, whose import of torch._dynamo doubled every command's start-up."""
    import subprocess
    import sys

    from tests.helpers import REPO

    code = "import sys, training.build, training.loop, evaluate; print('torch._dynamo' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


class _Noisy(torch.nn.Module):
    """A forward that draws from its own generator in a marked method (which dynamo cannot trace)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.generator = torch.Generator().manual_seed(0)

    @run_eagerly
    def noise(self, x):
        return torch.randn(x.shape, generator=self.generator)

    def forward(self, x):
        return self.linear(x) + self.noise(x)


def test_compile_model_disables_the_marked_methods_once():
    import torch._dynamo

    undecorated = vars(_Noisy)["noise"]
    model = _Noisy()
    x = torch.ones(2, 4)
    eager = model(x)
    torch._dynamo.reset()
    model.generator.manual_seed(0)
    compile_model(model, backend="eager", fullgraph=False)
    disabled = vars(_Noisy)["noise"]
    assert disabled is not undecorated and disabled._torchdynamo_disable
    assert torch.equal(model(x), eager)  # the same draw, run eagerly inside the compiled forward
    compile_model(_Noisy(), backend="eager")
    assert vars(_Noisy)["noise"] is disabled  # not wrapped twice
