"""Symbolic Alchemy in JAX: pure, ``jit``- and ``vmap``-able, for end-to-end compiled training.

::

    import jax
    import alchemy_gym.jax

    env, params = alchemy_gym.jax.make("Alchemy/SymbolicStandard-v0")
    obs, state = env.reset(jax.random.key(0), params)
    obs, state, reward, done, info = env.step(jax.random.key(1), state, action, params)

The API is gymnax's (autoreset inside ``step``); :func:`make` takes every symbolic ID (or
dm_alchemy level name) and the symbolic env's level settings (``end_trial_action``,
``observe_used``, ``num_trials``, ``max_steps_per_trial``, ``reward_weights``, …), checked before
anything is traced. Needs the ``jax`` extra (``pip install "alchemy-gym[jax]"``).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from alchemy_gym.core.spec import SPEC
from alchemy_gym.jax.env import AlchemyJax, EnvParams, EnvState
from alchemy_gym.jax.spaces import Box, Discrete

__all__ = ["AlchemyJax", "Box", "Discrete", "EnvParams", "EnvState", "make"]

#: Symbolic-env settings the JAX env does not take (it has no rendering, backends or belief states).
_NOT_IN_JAX = ("see_chemistries", "render_mode", "render_scale", "backend")


def graph_table(rules) -> np.ndarray:
    """The level's graph masks, each repeated in proportion to its prior probability (§1.6): a uniform pick from
    the table is a draw from the prior, exactly (:func:`alchemy_gym.core.graphs.prior_table`)."""
    from alchemy_gym.core import graphs

    return graphs.prior_table(rules.constraint_lists())


def make(env_id: str, *, belief_state: bool = False, **settings: Any) -> tuple[AlchemyJax, EnvParams]:
    """``(env, params)`` of a symbolic ID or dm_alchemy level name, with the symbolic env's level settings.

    ``belief_state=True`` keeps the observer's belief in the state (:meth:`AlchemyJax.belief_state`
    gives its 28-float observation); it costs 136 bytes of state per env and makes a step several times slower.
    """
    from alchemy_gym.envs.symbolic_settings import SymbolicSettings
    from alchemy_gym.jax.belief import level_tables
    from alchemy_gym.levels import find_level

    if not isinstance(belief_state, bool):
        raise ValueError(f"belief_state must be True or False, got {belief_state!r}")

    level = find_level(env_id)
    if level.symbolic_id is None:
        raise ValueError(f"{env_id!r} has no symbolic version: alchemy_gym.jax plays the symbolic game")
    unsupported = sorted(set(settings) & set(_NOT_IN_JAX))
    if unsupported:
        raise ValueError(
            f"{unsupported} are not settings of the JAX env (ground truth: env.ground_truth(state); belief state: "
            "make(..., belief_state=True) and env.belief_state(state))"
        )
    settings = SymbolicSettings.parse(level_name=level.name, **settings)
    config = settings.config
    source = settings.source
    rules = settings.rules
    if settings.fixed:
        chems = source.chemistry_table.astype(np.int32)
        items = source.items_table[:, : config.num_trials].astype(np.int32)
        table = np.zeros(1, np.int32)
    else:
        chems = np.zeros((1, SPEC.chem_width), np.int32)
        items = np.full((1, config.num_trials, SPEC.item_slots), -1, np.int32)
        table = graph_table(rules)
    prior = level_tables(rules)
    params = EnvParams(
        num_trials=config.num_trials,
        end_trial_action=config.end_trial_action,
        observe_used=config.observe_used,
        fixed=settings.fixed,
        randomize_maps=bool(rules.randomize_maps),
        rotation=bool(rules.rotation),
        max_steps_per_trial=jnp.int32(config.max_steps_per_trial),
        num_stones_per_trial=jnp.int32(config.num_stones_per_trial),
        num_potions_per_trial=jnp.int32(config.num_potions_per_trial),
        values=jnp.asarray(np.array(config.values), jnp.float32),
        graph_table=jnp.asarray(table),
        fixed_chemistries=jnp.asarray(chems),
        fixed_items=jnp.asarray(items),
        episode_stride=jnp.int32(1),
        belief_stone_maps=jnp.asarray(prior["stone_maps"]),
        belief_potion_maps=jnp.asarray(prior["potion_maps"]),
        belief_graphs=jnp.asarray(prior["graphs"]),
        belief=belief_state,
    )
    return AlchemyJax(params, level.symbolic_id), params
