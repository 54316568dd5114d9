"""Pytree helpers shared by the JAX env and its belief state."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leaf by leaf ``jnp.where(pred, on_true, on_false)`` of two pytrees of the same structure.

    ``pred`` covers the leading axes of every leaf (a scalar for whole trees, shape ``(B,)`` to choose per
    batch element) and is broadcast over the rest.
    """
    pred = jnp.asarray(pred)

    def pick(a, b):
        return jnp.where(pred.reshape(pred.shape + (1,) * (jnp.ndim(a) - pred.ndim)), a, b)

    return jax.tree_util.tree_map(pick, on_true, on_false)
