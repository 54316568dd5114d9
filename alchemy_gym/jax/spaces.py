"""gymnax-style spaces of the JAX env: ``sample(key)`` and ``contains(x)`` on JAX arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class Discrete:
    """Integers ``0..n-1``."""

    def __init__(self, n: int) -> None:
        self.n = int(n)
        self.shape = ()
        self.dtype = jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (), 0, self.n, dtype=jnp.int32)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.issubdtype(x.dtype, jnp.integer) & (x >= 0) & (x < self.n)

    def __repr__(self) -> str:
        return f"Discrete({self.n})"


class Box:
    """Floats between ``low`` and ``high`` (per element)."""

    def __init__(self, low, high, shape: tuple[int, ...], dtype=jnp.float32) -> None:
        self.low = np.broadcast_to(np.asarray(low, dtype=np.float32), shape)
        self.high = np.broadcast_to(np.asarray(high, dtype=np.float32), shape)
        self.shape = tuple(shape)
        self.dtype = dtype

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, self.shape, self.dtype, jnp.asarray(self.low), jnp.asarray(self.high))

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return (x.shape == self.shape) & jnp.all((x >= self.low) & (x <= self.high))

    def __repr__(self) -> str:
        return f"Box({self.shape}, {np.dtype(self.dtype).name})"
