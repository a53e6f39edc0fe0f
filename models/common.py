"""Weight initialisation shared by every layer, and compiling a model."""
import math
from typing import Callable, Optional, TypeVar

import torch
from torch import nn

Method = TypeVar("Method", bound=Callable)


def trunc_normal_init_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fill `tensor` from a normal truncated at [lower, upper] standard deviations, in place.

    JAX/Flax convention: the *truncated* distribution has standard deviation `std`. torch.nn.init.trunc_normal_
    instead truncates a normal of std `std`, whose spread then comes out ~12% smaller at ±2 std; HRM's
    published weights were initialised the JAX way, so we follow it.
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        # Variance of a standard normal truncated to [lower, upper] (standard formula with the pdf at the bounds).
        sqrt2 = math.sqrt(2.0)
        cdf_lo, cdf_hi = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
        mass = (cdf_hi - cdf_lo) / 2
        pdf_lo = math.exp(-0.5 * lower ** 2) / math.sqrt(2 * math.pi)
        pdf_hi = math.exp(-0.5 * upper ** 2) / math.sqrt(2 * math.pi)
        truncated_var = 1 - (upper * pdf_hi - lower * pdf_lo) / mass - ((pdf_lo - pdf_hi) / mass) ** 2
        scale = std / math.sqrt(truncated_var)

        # Inverse-CDF sampling: uniform in erf-space between the bounds, then erfinv maps it to the normal.
        tensor.uniform_(cdf_lo, cdf_hi, generator=generator)
        tensor.erfinv_()
        tensor.mul_(sqrt2 * scale)
        tensor.clamp_(lower * scale, upper * scale)
        return tensor


def run_eagerly(method: Method) -> Method:
    """Mark a model method that torch.compile must not trace (one that draws from a torch.Generator: a generator
    argument cannot be traced; it would graph-break and recompile). `compile_model` applies the marks: the
    decorator `torch.compiler.disable` imports torch._dynamo, which would double every command's start-up on the
    CPU, where nothing compiles."""
    method.run_eagerly = True
    return method


def compile_model(model: nn.Module, **options) -> None:
    """`model.compile(**options)` in place, the methods marked `run_eagerly` on its classes disabled for
    torch.compile first (once per class: a disabled method is left as it is)."""
    classes = {cls for module in model.modules() for cls in type(module).__mro__}
    for cls in classes:
        for name, attribute in list(vars(cls).items()):
            if getattr(attribute, "run_eagerly", False) and not getattr(attribute, "_torchdynamo_disable", False):
                setattr(cls, name, torch.compiler.disable(attribute))
    model.compile(**options)
