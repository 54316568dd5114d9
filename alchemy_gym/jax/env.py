"""Symbolic Alchemy as pure JAX functions (gymnax-style): ``reset`` and ``step`` over a pytree state.

The rules are the batched core's (:mod:`alchemy_gym.core.batch`) written as array expressions, on
the core's own tables (transitions for every edge mask, perceived stone and potion features,
stone values): given the same chemistry and items, a step gives exactly the core's observation,
reward and episode end. ``jax.jit``, ``jax.vmap`` and ``jax.lax.scan`` apply to every function
here. The one branch, the start of the next trial, is :func:`where_any`: under ``vmap`` it runs
once for the batch, on the steps where some env needs it.

Random draws differ from dm_alchemy's ``RandomState`` stream: ``reset`` seeds each env's own
counter-based stream from its JAX key, and every later draw (the items of each trial, the next
episode's chemistry after an autoreset) is a hash of that stream, so a step needs no key
splitting. The distributions are those of the task (uniform maps, rotations and items; the
graph prior of §1.6); a statistical test checks them.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from alchemy_gym.core.belief import ALL_ELEMENTS, CHEM_COLUMN, GROUND_TRUTH_TABLES
from alchemy_gym.core.checks import check_actions
from alchemy_gym.core.spec import SPEC
from alchemy_gym.envs.info import INFO_KEYS
from alchemy_gym.jax import belief as beliefs
from alchemy_gym.jax import spaces, tree

_GOLDEN = np.uint32(0x9E3779B9)
#: Counters of the item stream a trial uses: one per item slot, from 1 (each trial its own block).
_DRAWS_PER_TRIAL = SPEC.item_slots + 1


def _mix(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash with good avalanche (lowbias32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _draw(seed: jax.Array, counter: jax.Array | int) -> jax.Array:
    """The ``counter``-th 32-bit draw of the stream ``seed`` (both uint32)."""
    return _mix(seed + jnp.uint32(counter) * jnp.uint32(_GOLDEN))


def _below(bits: jax.Array, n: int | jax.Array) -> jax.Array:
    """A draw in ``0..n-1`` from 32 random bits (24 of them: a bias below 1e-6)."""
    return ((bits >> 8) % jnp.uint32(n)).astype(jnp.int32)


def where_any(pred: jax.Array, fn, args: Any, fallback: Any) -> Any:
    """``fn(*args)`` where ``pred`` holds, else ``fallback`` (pytrees of the same structure), computed lazily.

    For one env it is ``lax.cond(pred, …)``. Under ``jax.vmap`` (a custom batching rule) it is one
    ``lax.cond`` over the whole batch: ``fn`` runs, vmapped, only on the steps where some env needs
    it, and its results are selected per env. A plain ``vmap`` of a ``cond`` would run ``fn`` on
    every step for every env (a ``select`` of both branches). ``fn`` must not close over traced values:
    pass them in ``args``.
    """

    @jax.custom_batching.custom_vmap
    def lazy(pred, args, fallback):
        return jax.lax.cond(pred, lambda: fn(*args), lambda: fallback)

    @lazy.def_vmap
    def _batched(axis_size, in_batched, pred, args, fallback):
        pred_batched, args_batched, fallback_batched = in_batched
        fallback = jax.tree_util.tree_map(
            lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x))), fallback, fallback_batched
        )
        axes = jax.tree_util.tree_map(lambda b: 0 if b else None, args_batched)

        def compute():
            new = jax.vmap(fn, in_axes=axes, axis_size=axis_size)(*args)
            if not pred_batched:  # one decision for the whole batch
                return new
            return tree.select(pred, new, fallback)

        out = jax.lax.cond(jnp.any(pred), compute, lambda: fallback)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return lazy(pred, args, fallback)


@partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "max_steps_per_trial", "num_stones_per_trial", "num_potions_per_trial", "values", "graph_table",
        "fixed_chemistries", "fixed_items", "episode_stride",
        "belief_stone_maps", "belief_potion_maps", "belief_graphs",
    ],
    meta_fields=["num_trials", "end_trial_action", "observe_used", "fixed", "randomize_maps", "rotation", "belief"],
)  # fmt: skip
@dataclasses.dataclass(frozen=True)
class EnvParams:
    """A level and its settings. Array fields are traced (change them without recompiling); the others
    fix shapes or the kind of episodes and are static."""

    num_trials: int
    end_trial_action: bool
    observe_used: bool
    #: Fixed episodes (the evaluation level or given ones) instead of sampled ones.
    fixed: bool
    randomize_maps: bool
    rotation: bool
    max_steps_per_trial: jax.Array
    num_stones_per_trial: jax.Array
    num_potions_per_trial: jax.Array
    #: (8,) value of cashing each latent stone.
    values: jax.Array
    #: The level's graphs (edge masks), each repeated in proportion to its prior probability (§1.6): a
    #: uniform pick from this table is a draw from the prior, exactly (192 entries for the 109 graphs).
    graph_table: jax.Array
    #: Fixed episodes: (E, 4) chemistries and (E, trials, 15) items (one dummy row for sampled levels).
    fixed_chemistries: jax.Array
    fixed_items: jax.Array
    #: After fixed episode ``e`` an env plays ``(e + episode_stride) % E`` (1; ``N`` for N envs started at 0..N-1).
    episode_stride: jax.Array
    #: The belief's prior (:func:`alchemy_gym.jax.belief.level_tables`): possible stone maps (8,), potion
    #: maps (48,), and the level's graphs in the aligned frame of each possible stone map.
    belief_stone_maps: jax.Array
    belief_potion_maps: jax.Array
    belief_graphs: jax.Array
    #: Keep the observer's belief in the state (:meth:`AlchemyJax.belief_state`).
    belief: bool = False

    def replace(self, **changes: Any) -> EnvParams:
        return dataclasses.replace(self, **changes)


@partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "chem",
        "stones",
        "potions",
        "trial",
        "steps",
        "trial_reward",
        "episode_return",
        "episode",
        "seed",
        "stream",
        "time",
        "belief",
    ],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class EnvState:
    """One game: chemistry ``(potion map, stone map, graph mask, rotation)``, latent stone and potion per
    slot (int8, -1 used or empty), trial and step counters, the rewards of the trial and of the episode so
    far, the fixed episode (-1 if sampled), the episode's item stream, the env's own stream, the steps of
    the episode so far, and the observer's belief (:class:`~alchemy_gym.jax.belief.Belief`; ``None`` unless
    the env was made with ``belief_state=True``)."""

    chem: jax.Array
    stones: jax.Array
    potions: jax.Array
    trial: jax.Array
    steps: jax.Array
    trial_reward: jax.Array
    episode_return: jax.Array
    episode: jax.Array
    seed: jax.Array
    stream: jax.Array
    time: jax.Array
    belief: beliefs.Belief | None = None


class AlchemyJax:
    """Symbolic Alchemy in JAX. Build it with :func:`alchemy_gym.jax.make`.

    * ``obs, state = env.reset(key, params)`` (fixed levels: ``episode=e`` chooses the episode; by
      default one is drawn from ``key``);
    * ``obs, state, reward, done, info = env.step(key, state, action, params)``: autoreset inside, as
      in gymnax (after the last step of an episode the returned state and observation are the next
      episode's first); the next episode comes from the env's own stream (sampled levels) or the
      fixed-episode cursor, mixed with ``key``;
    * invalid actions (outside ``0..num_actions-1``) act as the no-op under ``jit`` (the step still
      counts); :meth:`checked_step` raises instead, outside ``jit``.
    """

    def __init__(self, params: EnvParams, name: str) -> None:
        self.default_params = params
        self.name = name
        self.num_actions = SPEC.num_actions(params.end_trial_action)
        self._no_op = SPEC.no_op_action(params.end_trial_action)
        # the core's tables (alchemy_gym.core.spec.SPEC), as device arrays
        self._trans = jnp.asarray(SPEC.transitions, dtype=jnp.int32)
        # observation rows: stone (stone map, rotation, latent) → its features and used flag, with a last row
        # for an empty slot; potion (potion map, latent) → colour and used flag, with a last row for an empty slot
        S, P = SPEC.stone_stride(params.observe_used), SPEC.potion_stride(params.observe_used)
        features = SPEC.stone_features.reshape(-1, SPEC.stone_feature_size)
        stone_rows = np.concatenate([features, np.zeros((len(features), 1), np.float32)], axis=1)
        stone_rows = np.concatenate([stone_rows, SPEC.stone_default[None]]).astype(np.float32)
        colours = SPEC.potion_features.reshape(-1)
        potion_rows = np.stack([colours, np.zeros(len(colours), np.float32)], axis=1)
        potion_rows = np.concatenate([potion_rows, SPEC.potion_default[None]]).astype(np.float32)
        self._stone_rows = jnp.asarray(stone_rows[:, :S])
        self._potion_rows = jnp.asarray(potion_rows[:, :P])
        # each action's stone slot and column: potion slot, the cauldron, the no-op or the end-trial action
        actions = SPEC.action_table(params.end_trial_action)
        self._action_stone = jnp.asarray(actions.stone, dtype=jnp.int32)
        self._action_column = jnp.asarray(actions.column, dtype=jnp.int32)
        self._ground_truth = {element: jnp.asarray(GROUND_TRUTH_TABLES[element]) for element in ALL_ELEMENTS}

    def __repr__(self) -> str:
        return f"AlchemyJax({self.name!r})"

    # ---------------------------------------------------------------- spaces

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        params = params or self.default_params
        return spaces.Discrete(SPEC.num_actions(params.end_trial_action))

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        params = params or self.default_params
        from alchemy_gym.envs.symbolic_settings import symbolic_obs_space

        box = symbolic_obs_space(params.observe_used)
        return spaces.Box(box.low, box.high, box.shape, jnp.float32)

    # ----------------------------------------------------------------- reset

    def reset(self, key: jax.Array, params: EnvParams | None = None, episode: jax.Array | int | None = None):
        """A new game: ``(obs, state)``; ``episode`` (fixed levels) chooses the episode."""
        params = params or self.default_params
        stream = jax.random.bits(key, (), jnp.uint32)
        if params.fixed:
            count = params.fixed_chemistries.shape[0]
            if episode is None:
                episode = _below(_draw(stream, 7), count)
            episode = jnp.asarray(episode, jnp.int32)
        else:
            episode = jnp.int32(SPEC.sampled)
        state = self._new_episode(stream, episode, params)
        return self.get_obs(state, params), state

    def _chemistry(self, stream: jax.Array, episode: jax.Array, params: EnvParams) -> jax.Array:
        """The chemistry of a new episode: the fixed episode's, or drawn from ``stream``."""
        if params.fixed:
            return params.fixed_chemistries[episode]
        if params.randomize_maps:
            potion_map = _below(_draw(stream, 1), SPEC.num_potion_maps)
            stone_map = _below(_draw(stream, 2), SPEC.num_stone_maps)
        else:
            potion_map, stone_map = jnp.int32(SPEC.fixed_potion_map), jnp.int32(SPEC.fixed_stone_map)
        graph = params.graph_table[_below(_draw(stream, 3), params.graph_table.shape[0])]
        rotation = _below(_draw(stream, 4), SPEC.num_rotations) if params.rotation else jnp.int32(0)
        parts = {"potion_map": potion_map, "stone_map": stone_map, "graph": graph, "rotation": rotation}
        return jnp.stack([parts[name] for name in SPEC.chem_layout]).astype(jnp.int32)

    def _new_episode(self, stream: jax.Array, episode: jax.Array, params: EnvParams) -> EnvState:
        seed = _draw(stream, 5)
        stones, potions = self._trial_items(params, episode, seed, jnp.int32(0))
        chem = self._chemistry(stream, episode, params)
        return EnvState(
            chem=chem,
            stones=stones,
            potions=potions,
            trial=jnp.int32(0),
            steps=jnp.int32(0),
            trial_reward=jnp.float32(0),
            episode_return=jnp.float32(0),
            episode=episode,
            seed=seed,
            stream=_draw(stream, 6),
            time=jnp.int32(0),
            belief=self._first_belief(chem, stones, params) if params.belief else None,
        )

    def _first_belief(self, chem: jax.Array, stones: jax.Array, params: EnvParams) -> beliefs.Belief:
        """The belief of a new episode, having seen its first trial's stones."""
        return beliefs.new_trial(beliefs.initial(params.belief_stone_maps, params.belief_potion_maps), chem, stones)

    def _next_belief(self, belief, done, chem, stones, params: EnvParams) -> beliefs.Belief:
        """The belief at the start of the next trial (of the next episode if ``done``)."""
        start = beliefs.initial(params.belief_stone_maps, params.belief_potion_maps)
        belief = tree.select(done, start, belief)
        return beliefs.new_trial(belief, chem, stones)

    def _trial_items(self, params: EnvParams, episode, seed, trial) -> tuple[jax.Array, jax.Array]:
        """The latent stones (3,) and potions (12,) of a trial, -1 padded."""
        ns = SPEC.max_stones
        if params.fixed:
            row = params.fixed_items[episode, jnp.minimum(trial, params.num_trials - 1)].astype(jnp.int8)
            return row[:ns], row[ns:]
        bits = _draw(seed, trial * _DRAWS_PER_TRIAL + jnp.arange(SPEC.item_slots, dtype=jnp.uint32) + 1)
        slot = jnp.arange(ns)
        stones = jnp.where(slot < params.num_stones_per_trial, _below(bits[:ns], SPEC.num_latent_stones), -1)
        slot = jnp.arange(SPEC.max_potions)
        potions = jnp.where(slot < params.num_potions_per_trial, _below(bits[ns:], SPEC.num_potion_types), -1)
        return stones.astype(jnp.int8), potions.astype(jnp.int8)

    # ------------------------------------------------------------------ step

    def step(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams | None = None):
        """One step with autoreset: ``(obs, state, reward, done, info)``."""
        params = params or self.default_params
        action = jnp.asarray(action, jnp.int32)
        valid = (action >= 0) & (action < self.num_actions)
        a = jnp.where(valid, action, self._no_op)  # invalid actions are the no-op
        s, column = self._action_stone[a], self._action_column[a]
        stone_slots, potion_slots = jnp.arange(SPEC.max_stones), jnp.arange(SPEC.max_potions)
        stone = jnp.sum(jnp.where(stone_slots == s, state.stones.astype(jnp.int32), 0))
        p = jnp.clip(column, 0, SPEC.max_potions - 1)
        potion = jnp.sum(jnp.where(potion_slots == p, state.potions.astype(jnp.int32), 0))
        touched = (column >= 0) & (stone >= 0)
        cash = touched & (column == SPEC.cauldron)
        dip = touched & (column < SPEC.cauldron) & (potion >= 0)
        moved = self._trans[
            state.chem[SPEC.chem_graph], jnp.maximum(stone, 0) * SPEC.num_potion_types + jnp.maximum(potion, 0)
        ]
        new_stone = jnp.where(cash, -1, jnp.where(dip, moved, stone))
        stones = jnp.where(stone_slots == s, new_stone.astype(jnp.int8), state.stones)
        potions = jnp.where((potion_slots == p) & dip, jnp.int8(-1), state.potions)
        reward = jnp.where(cash, params.values[jnp.maximum(stone, 0)], 0.0).astype(jnp.float32)
        trial_reward = state.trial_reward + reward
        episode_return = state.episode_return + reward
        steps = state.steps + 1
        trial_over = (column == SPEC.end_trial) | (steps >= params.max_steps_per_trial)
        done = trial_over & (state.trial >= params.num_trials - 1)
        values = {
            "trial": state.trial,
            "trial_ended": trial_over,
            "trial_reward": trial_reward,
            "episode_return": episode_return,
            "episode_index": state.episode,
            "discount": jnp.where(done, 0.0, 1.0),
            "valid_action": valid,
        }
        info = {key.name: jnp.asarray(values[key.name]).astype(key.dtype) for key in INFO_KEYS}  # the envs' schema
        # what comes next: the next trial, or (autoreset) the next episode, drawn from the env's stream
        # mixed with ``key`` (sampled levels) or the fixed-episode cursor; each computed only on steps
        # where some env starts one (see where_any)
        stream = state.stream ^ _mix(jax.random.key_data(key).astype(jnp.uint32).reshape(-1)[-1])
        chem, episode, seed, stream = where_any(
            done,
            self._next_episode,
            (state.episode, stream, params),
            (state.chem, state.episode, state.seed, state.stream),
        )
        trial = jnp.where(done, 0, jnp.where(trial_over, state.trial + 1, state.trial))
        stones, potions = where_any(trial_over, self._trial_items, (params, episode, seed, trial), (stones, potions))
        belief = state.belief
        if params.belief:  # what the dip showed, then the next trial's stones
            seen = beliefs.observe_potion(belief, state.chem, stone, potion, moved)
            belief = jax.tree_util.tree_map(lambda a, b: jnp.where(dip, a, b), seen, belief)
            belief = where_any(trial_over, self._next_belief, (belief, done, chem, stones, params), belief)
        state = EnvState(
            chem=chem,
            stones=stones,
            potions=potions,
            trial=trial,
            steps=jnp.where(trial_over, 0, steps),
            trial_reward=jnp.where(trial_over, 0.0, trial_reward),
            episode_return=jnp.where(done, 0.0, episode_return),
            episode=episode,
            seed=seed,
            stream=stream,
            time=jnp.where(done, 0, state.time + 1),
            belief=belief,
        )
        return self.get_obs(state, params), state, reward, done, info

    def _next_episode(self, episode: jax.Array, stream: jax.Array, params: EnvParams):
        """``(chemistry, episode, item seed, stream)`` of the episode after ``episode`` (an autoreset)."""
        if params.fixed:
            following = (episode + params.episode_stride) % params.fixed_chemistries.shape[0]
        else:
            following = jnp.int32(SPEC.sampled)
        return self._chemistry(stream, following, params), following, _draw(stream, 5), _draw(stream, 6)

    def checked_step(self, key, state: EnvState, action, params: EnvParams | None = None):
        """:meth:`step` that raises ``ValueError`` on an invalid action (outside ``jit`` only)."""
        params = params or self.default_params
        try:
            values = check_actions(action, np.shape(action), SPEC.num_actions(params.end_trial_action))
        except jax.errors.TracerArrayConversionError:
            raise TypeError("checked_step checks concrete actions: call it outside jax.jit / vmap") from None
        action = values.astype(np.int32)  # in range: checked
        if values.ndim == 0:
            return jax.jit(self.step)(key, state, action, params)
        return jax.jit(jax.vmap(self.step, in_axes=(0, 0, 0, None)))(key, state, action, params)

    # ----------------------------------------------------------- observation

    def get_obs(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """The symbolic observation (§4.4): 39 floats, 24 without the used flags."""
        chem = state.chem
        stones, potions = state.stones.astype(jnp.int32), state.potions.astype(jnp.int32)
        stone_map, rotation = chem[SPEC.chem_stone_map], chem[SPEC.chem_rotation]
        stone_index = (stone_map * SPEC.num_rotations + rotation) * SPEC.num_latent_stones + stones
        stone_obs = self._stone_rows[jnp.where(stones >= 0, stone_index, self._stone_rows.shape[0] - 1)]
        potion_index = chem[SPEC.chem_potion_map] * SPEC.num_potion_types + potions
        potion_obs = self._potion_rows[jnp.where(potions >= 0, potion_index, self._potion_rows.shape[0] - 1)]
        return jnp.concatenate([stone_obs.reshape(-1), potion_obs.reshape(-1)])

    def ground_truth(self, state: EnvState) -> jax.Array:
        """The ground-truth chemistry observation (§4.9): 28 floats (graph, potion map, stone map, rotation)."""
        return jnp.concatenate([self._ground_truth[e][state.chem[CHEM_COLUMN[e]]] for e in ALL_ELEMENTS])

    def belief_state(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """The belief-state chemistry observation (§4.9): 28 floats, the core's ``"belief_state"`` content
        (needs ``make(..., belief_state=True)``)."""
        params = params or self.default_params
        if not params.belief or state.belief is None:
            raise ValueError("this env keeps no belief: make it with alchemy_gym.jax.make(env_id, belief_state=True)")
        return beliefs.vector(state.belief, params.belief_graphs)

    def is_terminal(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """Always False for a state returned by :meth:`step` (it is already the next episode's)."""
        return jnp.bool_(False)
