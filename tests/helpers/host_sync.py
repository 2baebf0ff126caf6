"""Which operations in a piece of code would make the host wait for a CUDA device.

On CPU nothing waits, so tests look at the operators instead: a `TorchDispatchMode` records every aten op run inside
`host_sync_ops(fn)` and returns those whose result size or value the host must read before it can go on (boolean
indexing, `nonzero`, `.item()` / `bool(tensor)`, `unique`, ...). An empty list means the code can be queued on the
device without a synchronisation."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = {"nonzero", "masked_select", "_local_scalar_dense", "unique", "_unique2", "unique_consecutive", "unique_dim"}


def _bool_indices(args) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING or (name in ("index", "index_put", "index_put_") and _bool_indices(args)):
            self.found.append(f"aten.{name}")
        elif name == "repeat_interleave" and (kwargs or {}).get("output_size") is None:
            self.found.append(f"aten.{name}")
        return func(*args, **(kwargs or {}))


def host_sync_ops(fn) -> list[str]:
    """Run `fn()` and return the syncing aten ops it ran, in order (empty: none)."""
    recorder = _Recorder()
    with recorder:
        fn()
    return recorder.found
