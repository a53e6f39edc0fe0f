"""The one place where the compute device and its defaults (dtype, compile) are chosen."""
import torch

from utils.errors import UserError

CUDA = "cuda"


class DeviceError(UserError, RuntimeError):
    """The requested device is not available on this machine."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" -> this rank's GPU if CUDA is available, else CPU. Explicit names are checked, not trusted."""
    if name == "auto":
        name = CUDA if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device={name} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if is_cuda(device):
        if not torch.cuda.is_available():
            raise DeviceError(f"device={name} but CUDA is not available here; use device=cpu (or device=auto)")
        if device.index is None:  # one process per GPU under torchrun
            device = torch.device(device.type, local_rank)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device={name} but MPS is not available here; use device=cpu (or device=auto)")
    return device


def default_forward_dtype(device: torch.device) -> str:
    """bf16 activations on CUDA (tensor cores); fp32 elsewhere, where bf16 matmuls are slow or missing."""
    return "bfloat16" if is_cuda(device) else "float32"


def default_compile(device: torch.device) -> bool:
    """torch.compile pays off on CUDA; on CPU its start-up cost outweighs the gain for short runs."""
    return is_cuda(device)


def is_cuda(device: torch.device) -> bool:
    return device.type == CUDA
