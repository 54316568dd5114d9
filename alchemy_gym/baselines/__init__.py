"""Training baselines (need the ``jax`` extra): :mod:`alchemy_gym.baselines.rl2`, RL² in JAX."""
