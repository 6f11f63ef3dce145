"""The network's forward pass, compiled: the one inference path of ``LightningMLPClassifier``.

Torch trains the network; every probability after that (``predict_proba`` on a batch in research
and backtests, one row in the live engine) comes from ``positive`` here, so a row scores the same
bits alone or in a batch of any size. Each layer's unit is torch's batched CPU ``linear`` replayed:
float32, the products fused into the sum one input at a time (``llvm.fma.f32``) from zero, then
the bias. ReLU between layers, dropout off (evaluation), and the probability is the logistic of
the float32 logit in float64.

Weights travel as ``NetworkArrays``: every layer's weights flattened (float32, row-major, as
``nn.Linear.weight``), the biases concatenated, and the shapes (out, in) per layer.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit, types
from numba.extending import intrinsic

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


class NetworkArrays(NamedTuple):
    weights: Float32Array  # every layer's (out, in) weights, flattened in order
    biases: Float32Array  # every layer's biases, in order
    shapes: IntArray  # (layers, 2): out, in


def network_arrays(module: Any) -> NetworkArrays | None:
    """The arrays of an ``nn.Sequential`` of Linear, ReLU and Dropout layers that alternates
    Linear and ReLU and ends with a one-unit Linear (None for any other shape)."""
    from torch import nn

    linears = [layer for layer in module if not isinstance(layer, nn.Dropout)]
    if not linears or not all(
        isinstance(layer, nn.Linear if i % 2 == 0 else nn.ReLU) for i, layer in enumerate(linears)
    ):
        return None
    layers = linears[::2]
    if len(linears) % 2 == 0 or layers[-1].out_features != 1:
        return None
    weights, biases, shapes = [], [], []
    for layer in layers:
        w = layer.weight.detach().cpu().numpy().astype(np.float32)
        b = (
            np.zeros(layer.out_features, dtype=np.float32)
            if layer.bias is None
            else layer.bias.detach().cpu().numpy().astype(np.float32)
        )
        weights.append(w.ravel())
        biases.append(b)
        shapes.append(w.shape)
    return NetworkArrays(
        np.ascontiguousarray(np.concatenate(weights)),
        np.ascontiguousarray(np.concatenate(biases)),
        np.asarray(shapes, dtype=np.int64),
    )


@intrinsic
def _llvm_fma32(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    if not all(t == types.float32 for t in (a, b, c)):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return types.float32(a, b, c), codegen


@njit(cache=True)
def scratch(n_inputs: int, shapes: IntArray) -> tuple[Float32Array, Float32Array]:
    """``forward_row``'s two scratch rows: as wide as the inputs or the widest layer."""
    widest = max(n_inputs, shapes[:, 0].max())
    return np.empty(widest, dtype=np.float32), np.empty(widest, dtype=np.float32)


@njit(cache=True)
def forward_row(
    x: Float32Array,
    weights: Float32Array,
    biases: Float32Array,
    shapes: IntArray,
    a: Float32Array,
    b: Float32Array,
) -> float:  # pragma: no cover - compiled
    """The positive-class probability of one float32 row; ``a`` and ``b`` are scratch of at
    least the widest layer."""
    width = x.shape[0]
    for i in range(width):
        a[i] = x[i]
    w_at = 0
    b_at = 0
    last = shapes.shape[0] - 1
    for layer in range(shapes.shape[0]):
        n_out = shapes[layer, 0]
        n_in = shapes[layer, 1]
        for o in range(n_out):
            acc = np.float32(0.0)
            row = w_at + o * n_in
            for i in range(n_in):
                acc = _llvm_fma32(a[i], weights[row + i], acc)  # type: ignore[call-arg]
            acc = acc + biases[b_at + o]
            if layer != last and acc < np.float32(0.0):
                acc = np.float32(0.0)  # ReLU
            b[o] = acc
        w_at += n_out * n_in
        b_at += n_out
        a, b = b, a
    return 1.0 / (1.0 + math.exp(-np.float64(a[0])))


@njit(cache=True)
def positive(
    x: Float32Array, weights: Float32Array, biases: Float32Array, shapes: IntArray
) -> FloatArray:  # pragma: no cover - compiled
    """The positive-class probability of every row of ``x`` (float32, the network's inputs)."""
    a, b = scratch(x.shape[1], shapes)
    out = np.empty(x.shape[0])
    for r in range(x.shape[0]):
        out[r] = forward_row(x[r], weights, biases, shapes, a, b)
    return out
