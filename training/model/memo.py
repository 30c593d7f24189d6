"""Memo for tensors that depend only on sizes, a device and a dtype.

Window permutations, shifted-window masks and position embeddings are the same for every
forward at one input size, yet eager PyTorch rebuilds them each time: a dozen small operators
per attention layer (CPU time, kernel launches on a GPU) and, for DMCF's shift mask at 1/4
scale, a 26 MB tensor per forward at 256x640. `size_constant` keeps them, keyed by the function
and its arguments, up to `MAX_BYTES` (least recently used first out).

Tracing stays correct:
- torch.compile / strict export (dynamo): the memo is bypassed, the function is traced as before;
- torch.export (non-strict): a memoised tensor is used as a constant of the graph (lifted into
  the program's constants), a missing one is built by traced operators and not stored (it may
  be a fake tensor); dynamic shapes (SymInt sizes) bypass the memo;
- the TorchScript ONNX exporter (torch.jit.trace): the sizes arrive as traced tensors, so the
  memo is bypassed and the exporter's constant folding does the same job;
- tensors are built outside inference mode, so a memo filled during evaluation still serves
  training (an inference tensor cannot be saved for backward, and index_select saves its index).
Callers must not modify a returned tensor in place.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

MAX_BYTES = 256 * 2**20  # a full set for one 256x640 input is about 30 MB (tiny and swin_b)

_memo: OrderedDict[tuple, Any] = OrderedDict()
_sizes: dict[tuple, int] = {}
_lock = threading.Lock()


def _nbytes(value: Any) -> int:
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    return sum(_nbytes(v) for v in value)  # tuples of tensors


def _compiling() -> bool:
    return torch.compiler.is_dynamo_compiling()


def _may_store() -> bool:
    """True in plain eager execution: not exporting, tracing or compiling."""
    return not (torch.compiler.is_exporting() or torch.jit.is_tracing() or _compiling())


def size_constant(fn: Callable) -> Callable:
    """Decorator: `fn(*args, **kwargs)` memoised by its (hashable) arguments."""

    @functools.wraps(fn)
    def memoised(*args, **kwargs):
        traced = (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool)
        if _compiling() or any(isinstance(a, traced) for a in (*args, *kwargs.values())):
            return fn(*args, **kwargs)  # dynamo, or sizes that are traced values: no memo
        key = (fn.__module__, fn.__qualname__, args, tuple(sorted(kwargs.items())))
        with _lock:
            if key in _memo:
                _memo.move_to_end(key)
                return _memo[key]
        store = _may_store()
        with torch.inference_mode(False):
            value = fn(*args, **kwargs)
        if store:
            _put(key, value)
        return value

    return memoised


def _put(key: tuple, value: Any) -> None:
    size = _nbytes(value)
    if size > MAX_BYTES:
        return
    with _lock:
        _memo[key] = value
        _sizes[key] = size
        total = sum(_sizes.values())
        while total > MAX_BYTES:
            old, _ = _memo.popitem(last=False)
            total -= _sizes.pop(old)


def clear() -> None:
    """Forgets every memoised tensor (tests; or to free the memory)."""
    with _lock:
        _memo.clear()
        _sizes.clear()


def memo_bytes() -> int:
    """Bytes of the memoised tensors now, counted per entry (a tensor two entries share, such
    as a float32 mask `shift_mask_for` returns unconverted, is counted twice: the budget errs on
    the safe side)."""
    with _lock:
        return sum(_sizes.values())
