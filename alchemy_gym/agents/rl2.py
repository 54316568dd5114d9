"""RL² agents: a GRU policy trained by :mod:`alchemy_gym.baselines.rl2`, played in numpy.

The network is defined here once, over an array module ``xp`` (``numpy`` or ``jax.numpy``): the
trainer calls these functions with ``jax.numpy``, :class:`RL2Agent` with ``numpy``, so playing
and training compute the same function. Each step the network sees

* the symbolic observation: the stones as they are (3 × 5 floats) and how many potions of each
  colour are left (6 counts);
* its previous action (one-hot), and what it did: the stone before (5 floats), the potion colour or
  the cauldron (one-hot of 8), the same stone slot after (5 floats), and the reward it got;
* where it is in the episode: step within the trial and trial (one-hot, 20 + 10);
* with ``inputs="belief"`` or ``"ground-truth"`` the 28-float chemistry observation (the
  observer's belief state or the true chemistry, §4.9), as ``2x - 1``.

An encoder layer feeds a GRU whose memory runs through all 10 trials of an episode (zeroed only
when an episode starts). The policy scores each stone (one small ReLU layer of the GRU state and
the stone's features, shared by the 3 stone slots) against each potion colour and the cauldron:
the logit of "stone s into potion p" is stone s's score for p's colour, so what the agent learns
about a colour holds in every potion slot. Then the no-op; actions that the observation shows can
have no effect (a used or empty stone or potion slot) are masked. :class:`RL2Agent` plays the most
likely action; exact ties and near-ties (within :data:`TIE`) go to the lowest action, so that
float64 numpy and float64 XLA pick the same action.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from alchemy_gym.agents.base import Agent, as_game
from alchemy_gym.core.belief import ELEMENT_SIZES
from alchemy_gym.core.game import GameConfig
from alchemy_gym.core.spec import SPEC

#: The task the network is built for, read from the core's description of the game (and its default
#: settings): 10 trials of 20 steps, 39-float observations (with used flags), 40 actions.
TRIAL_STEPS, TRIALS = GameConfig.max_steps_per_trial, GameConfig.num_trials
OBS_SIZE, NUM_ACTIONS = SPEC.observation_size(observe_used=True), SPEC.num_actions(end_trial_action=False)
STONES, POTIONS = SPEC.max_stones, SPEC.max_potions
#: Floats per stone slot (features, reward indicator, used flag) and per potion slot (colour, used flag).
STONE_FEATURES, POTION_FEATURES = SPEC.stone_stride(observe_used=True), SPEC.potion_stride(observe_used=True)
#: Where the potion slots start in an observation; the potion colours there.
POTIONS_AT = STONES * STONE_FEATURES
NUM_COLOURS = SPEC.num_potion_types
#: Size of a chemistry observation (graph 12, potion map 9, stone map 3, rotation 4).
CHEMISTRY_SIZE = sum(ELEMENT_SIZES.values())
#: ``--inputs`` kinds and the chemistry observation each adds (``see_chemistries`` content).
INPUT_KINDS: dict[str, str | None] = {"symbolic": None, "belief": "belief_state", "ground-truth": "ground_truth"}
#: Packaged agents: name → input kind.
AGENTS = {"rl2": "symbolic", "rl2-belief": "belief", "rl2-ground-truth": "ground-truth"}
#: Greedy play: actions whose logit is within TIE of the best count as tied; the lowest wins.
TIE = 1e-6
#: The previous reward enters the network divided by this.
REWARD_INPUT_SCALE = 10.0
#: Target codes of the policy head: potion colours 0..5, 6 a used or empty potion slot, 7 the cauldron.
EMPTY_CODE, CAULDRON_CODE, NUM_CODES = NUM_COLOURS, NUM_COLOURS + 1, NUM_COLOURS + 2
#: Masked logits.
MASKED = -1e9

#: Parameter names and how their shapes follow from (inputs, hidden, head).
PARAM_NAMES = (
    "enc_w", "enc_b", "gru_wi", "gru_bi", "gru_wh", "gru_bh",
    "pol_h", "pol_b", "pol_stone", "pol_out", "pol_out_b", "noop_w", "noop_b",
    "val_w1", "val_b1", "val_w2", "val_b2",
)  # fmt: skip


def input_size(inputs: str) -> int:
    """Length of the network's input vector for an input kind."""
    check_inputs(inputs)
    stones, counts, before_after, reward = STONES * STONE_FEATURES, NUM_COLOURS, 2 * STONE_FEATURES, 1
    base = stones + counts + NUM_ACTIONS + before_after + NUM_CODES + reward + TRIAL_STEPS + TRIALS
    return base + (CHEMISTRY_SIZE if INPUT_KINDS[inputs] else 0)


def check_inputs(inputs: str) -> str:
    if inputs not in INPUT_KINDS:
        raise ValueError(f"unknown inputs {inputs!r}: allowed {', '.join(INPUT_KINDS)}")
    return inputs


def param_shapes(inputs: str, hidden: int, head: int) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter."""
    d, h, k = input_size(inputs), hidden, head
    return {
        "enc_w": (d, h), "enc_b": (h,),
        "gru_wi": (h, 3 * h), "gru_bi": (3 * h,), "gru_wh": (h, 3 * h), "gru_bh": (3 * h,),
        "pol_h": (h, k), "pol_b": (k,), "pol_stone": (STONE_FEATURES, k),
        "pol_out": (k, NUM_CODES), "pol_out_b": (NUM_CODES,), "noop_w": (h,), "noop_b": (),
        "val_w1": (h, k), "val_b1": (k,), "val_w2": (k,), "val_b2": (),
    }  # fmt: skip


# ------------------------------------------------------------------ the network, over xp = numpy or jax.numpy


def _one_hot(index, n: int, xp, dtype):
    return (index[..., None] == xp.arange(n)).astype(dtype)


def potion_codes(obs, xp):
    """(..., 12) int32: each potion slot's colour 0..5, or 6 if used or empty."""
    colour, used = obs[..., POTIONS_AT::POTION_FEATURES], obs[..., POTIONS_AT + 1 :: POTION_FEATURES]
    code = xp.round((colour + 1.0) * SPEC.potion_type_scale).astype(xp.int32)
    return xp.where(used > 0.5, EMPTY_CODE, code)


def action_mask(obs, xp):
    """(..., 40) bool: the actions that can have an effect, read from the observation (and the no-op)."""
    stone_ok = obs[..., STONE_FEATURES - 1 : POTIONS_AT : STONE_FEATURES] < 0.5  # (..., 3) used flags
    potion_ok = obs[..., POTIONS_AT + 1 :: POTION_FEATURES] < 0.5  # (..., 12)
    targets = xp.concatenate([xp.ones_like(potion_ok[..., :1]), potion_ok], axis=-1)  # cauldron, potions
    pairs = stone_ok[..., :, None] & targets[..., None, :]  # (..., 3, 13)
    moves = pairs.reshape(pairs.shape[:-2] + (NUM_ACTIONS - 1,))
    return xp.concatenate([xp.ones_like(stone_ok[..., :1]), moves], axis=-1)


def network_inputs(obs, prev_obs, prev_action, prev_reward, step, trial, chemistry, xp, dtype):
    """The input vector (..., input_size) of one step.

    ``obs`` and ``prev_obs`` (..., 39): this step's and the previous step's observations; ``prev_action``
    (...,) int, 0 (the no-op) at an episode's first step; ``prev_reward`` the reward it got; ``step`` and
    ``trial`` the position in the episode; ``chemistry`` (..., 28) or ``None``.
    """
    obs, prev_obs = obs.astype(dtype), prev_obs.astype(dtype)
    codes = potion_codes(obs, xp)
    counts = _one_hot(codes, NUM_CODES, xp, dtype)[..., :NUM_COLOURS].sum(axis=-2) / 4.0
    a = prev_action.astype(xp.int32)
    moved = (a > 0).astype(dtype)[..., None]
    slot = xp.clip((a - 1) // SPEC.stone_block, 0, STONES - 1)
    column = (a - 1) % SPEC.stone_block  # 0 the cauldron, 1 + p potion p
    stones_before = prev_obs[..., :POTIONS_AT].reshape(prev_obs.shape[:-1] + (STONES, STONE_FEATURES))
    stones_now = obs[..., :POTIONS_AT].reshape(obs.shape[:-1] + (STONES, STONE_FEATURES))
    index = slot[..., None, None]
    before = xp.take_along_axis(stones_before, index, axis=-2)[..., 0, :] * moved
    after = xp.take_along_axis(stones_now, index, axis=-2)[..., 0, :] * moved
    prev_codes = potion_codes(prev_obs, xp)
    used = xp.take_along_axis(prev_codes, xp.clip(column - 1, 0, POTIONS - 1)[..., None], axis=-1)[..., 0]
    target = _one_hot(xp.where(column == 0, CAULDRON_CODE, used), NUM_CODES, xp, dtype) * moved
    parts = [
        obs[..., :POTIONS_AT],
        counts,
        _one_hot(a, NUM_ACTIONS, xp, dtype),
        before,
        target,
        after,
        (prev_reward.astype(dtype) / REWARD_INPUT_SCALE)[..., None],
        _one_hot(step.astype(xp.int32), TRIAL_STEPS, xp, dtype),
        _one_hot(trial.astype(xp.int32), TRIALS, xp, dtype),
    ]
    if chemistry is not None:
        parts.append(chemistry.astype(dtype) * 2.0 - 1.0)
    return xp.concatenate(parts, axis=-1)


def _sigmoid(x, xp):
    return 1.0 / (1.0 + xp.exp(-x))


def gru_input(params, x, xp):
    """The encoder and the GRU's input projection of inputs ``x`` (..., input_size): (..., 3 * hidden)."""
    e = xp.maximum(x @ params["enc_w"] + params["enc_b"], 0.0)
    return e @ params["gru_wi"] + params["gru_bi"]


def gru_recur(params, gi, h, xp):
    """The GRU's memory (..., hidden) after projected input ``gi`` (torch's GRU equations)."""
    n = h.shape[-1]
    gh = h @ params["gru_wh"] + params["gru_bh"]
    r = _sigmoid(gi[..., :n] + gh[..., :n], xp)
    z = _sigmoid(gi[..., n : 2 * n] + gh[..., n : 2 * n], xp)
    c = xp.tanh(gi[..., 2 * n :] + r * gh[..., 2 * n :])
    return (1.0 - z) * c + z * h


def core_step(params, x, h, xp):
    """One step of the memory: ``h`` (..., hidden) after input ``x``."""
    return gru_recur(params, gru_input(params, x, xp), h, xp)


def heads(params, h, obs, xp):
    """``(logits, value)``: masked logits (..., 40) of the actions and the value (...) for memory ``h``.

    One small ReLU layer of the memory and a stone's features scores that stone against each target code
    (the 6 potion colours, a used potion, the cauldron): the logit of "stone s into potion p" is stone s's
    score for potion p's colour.
    """
    obs = obs.astype(h.dtype)
    stones = obs[..., :POTIONS_AT].reshape(obs.shape[:-1] + (STONES, STONE_FEATURES))
    u = xp.maximum((h @ params["pol_h"] + params["pol_b"])[..., None, :] + stones @ params["pol_stone"], 0.0)
    scores = u @ params["pol_out"] + params["pol_out_b"]  # (..., 3 stones, 8 codes)
    codes = xp.concatenate([xp.full(obs.shape[:-1] + (1,), CAULDRON_CODE, xp.int32), potion_codes(obs, xp)], -1)
    pick = _one_hot(codes, NUM_CODES, xp, scores.dtype)  # (..., 13 targets, 8 codes)
    # a broadcast product and sum (fast in XLA on the CPU, unlike a gather's gradient); exact: one term is not 0
    pairs = (scores[..., :, None, :] * pick[..., None, :, :]).sum(-1)  # (..., 3, 13)
    noop = h @ params["noop_w"] + params["noop_b"]
    logits = xp.concatenate([noop[..., None], pairs.reshape(pairs.shape[:-2] + (NUM_ACTIONS - 1,))], -1)
    logits = xp.where(action_mask(obs, xp), logits, MASKED)
    value = xp.maximum(h @ params["val_w1"] + params["val_b1"], 0.0) @ params["val_w2"] + params["val_b2"]
    return logits, value


def greedy_action(logits, xp):
    """The most likely action: the lowest of those within :data:`TIE` of the best logit."""
    best = logits.max(axis=-1, keepdims=True)
    return xp.argmax(logits >= best - TIE, axis=-1)


def softmax(logits, xp):
    z = xp.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------ weights files


def packaged_weights(name: str) -> Path:
    """Path of a packaged agent's weights file."""
    if name not in AGENTS:
        raise ValueError(f"unknown RL² agent {name!r}: allowed {', '.join(AGENTS)}")
    return Path(str(resources.files("alchemy_gym.data").joinpath("rl2", f"{name}.npz")))


def weights_file(weights: str | os.PathLike) -> Path:
    """The weights file ``weights`` names: a packaged agent's (``rl2``, ``rl2-belief``, ``rl2-ground-truth``) or a
    path."""
    return packaged_weights(weights) if isinstance(weights, str) and weights in AGENTS else Path(weights)


def save_weights(path: str | os.PathLike, params: dict[str, Any], meta: dict[str, Any], dtype=np.float16) -> None:
    """Write ``params`` and ``meta`` (``inputs``, ``hidden``, ``head`` and anything else) to an ``.npz`` file,
    atomically. The weights are stored as float16 by default (half the size of float32; the agent computes
    in float64 with exactly these values, and so does the JAX evaluation of the file)."""
    path = Path(path)
    arrays = {name: np.asarray(params[name], dtype=dtype) for name in PARAM_NAMES}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def load_weights(path: str | os.PathLike, inputs: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(params, meta)`` of a weights file, checked against the shapes its ``meta`` declares (and ``inputs``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"RL² weights file {str(path)!r} not found: expected an .npz written by "
            "`python -m alchemy_gym.baselines.rl2 --export`"
        )
    with np.load(path, allow_pickle=False) as data:
        if "meta" not in data.files:
            raise ValueError(f"{str(path)!r} is not an RL² weights file (no 'meta' entry)")
        meta = json.loads(str(data["meta"]))
        params = {name: data[name] for name in PARAM_NAMES if name in data.files}
    kind = check_inputs(meta.get("inputs", "?"))
    if inputs is not None and kind != inputs:
        raise ValueError(f"{str(path)!r} holds a policy for inputs {kind!r}, expected {inputs!r}")
    want = param_shapes(kind, int(meta["hidden"]), int(meta["head"]))
    for name, shape in want.items():
        if name not in params:
            raise ValueError(f"{str(path)!r} lacks parameter {name!r} (expected shape {shape})")
        if params[name].shape != shape:
            raise ValueError(f"{str(path)!r}: parameter {name!r} has shape {params[name].shape}, expected {shape}")
    return params, meta


# ------------------------------------------------------------------ the agent


class RL2Agent(Agent):
    """A trained RL² policy playing its most likely action, in numpy (float64).

    Args:
        weights: an agent name (``rl2``, ``rl2-belief``, ``rl2-ground-truth``) or a weights file.
        level: the level played, whose prior the belief-state input assumes (``rl2-belief``).
    """

    name = "rl2"

    def __init__(self, weights: str | os.PathLike = "rl2", level: str | None = None) -> None:
        from alchemy_gym.levels import EVALUATION_PRIOR

        path = weights_file(weights)
        params, self.meta = load_weights(path)
        if isinstance(weights, str) and weights in AGENTS:
            self.name = weights
            if self.meta["inputs"] != AGENTS[weights]:
                raise ValueError(f"{path}: holds inputs {self.meta['inputs']!r}, {weights} needs {AGENTS[weights]!r}")
        self.params = {k: v.astype(np.float64) for k, v in params.items()}
        self.inputs = self.meta["inputs"]
        self.level = level or EVALUATION_PRIOR
        self._content = INPUT_KINDS[self.inputs]
        self._game = None
        self._observer = None

    def _chemistry_observer(self, game):
        """The observer of this game's chemistry observation (one per game, listening to its events)."""
        from alchemy_gym.core.belief import ChemistryObserver, ChemistrySeen
        from alchemy_gym.core.chemistry import LevelRules

        if self._game is not game:
            rules = LevelRules.from_level_name(self.level)
            self._observer = ChemistryObserver(game, {"c": ChemistrySeen(content=self._content)}, rules)
            self._game = game
            # the episode has started already: catch up with the events the observer missed
            self._observer._listen("episode_start", game.chemistry)
            self._observer._listen("trial_start", 0)
        self._observer.new_episode(np.random.default_rng(0))  # one content, nothing drawn
        return self._observer

    def _check(self, game) -> None:
        if (
            len(game.obs) != OBS_SIZE
            or game.num_actions != NUM_ACTIONS
            or game.num_trials != TRIALS
            or game.max_steps_per_trial != TRIAL_STEPS
        ):
            raise ValueError(
                f"{self.name} plays the standard game settings ({TRIALS} trials of {TRIAL_STEPS} steps, "
                f"{OBS_SIZE}-float observations with used flags, {NUM_ACTIONS} actions); this game has "
                f"{game.num_trials} trials of {game.max_steps_per_trial} steps, "
                f"{len(game.obs)}-float observations, {game.num_actions} actions"
            )

    def reset(self, game, episode: int | None = None) -> None:
        game = as_game(game)
        self._check(game)
        if self._content:
            self._chemistry_observer(game)
        self._h = np.zeros(int(self.meta["hidden"]))
        self._prev_obs: np.ndarray | None = None
        self._prev_action = 0
        self._paid = 0.0

    def probabilities(self, game) -> np.ndarray:
        """The policy's action probabilities at the game's current state (advances the memory: one call per step)."""
        game = as_game(game)
        obs = np.array(game.obs, dtype=np.float64)
        paid = float(sum(game.trial_rewards))
        if self._prev_obs is None:
            prev_obs, prev_action, prev_reward = obs, 0, 0.0
        else:
            prev_obs, prev_action, prev_reward = self._prev_obs, self._prev_action, paid - self._paid
        chemistry = np.asarray(self._observer.observe()["c"], np.float64) if self._content else None
        x = network_inputs(
            obs,
            prev_obs,
            np.asarray(prev_action),
            np.asarray(prev_reward),
            np.asarray(game.steps_this_trial),
            np.asarray(game.trial_number),
            chemistry,
            np,
            np.float64,
        )
        self._h = core_step(self.params, x, self._h, np)
        logits, _ = heads(self.params, self._h, obs, np)
        self._logits = logits
        self._prev_obs, self._paid = obs, paid
        return softmax(logits, np)

    def act(self, game) -> int:
        self.probabilities(game)
        action = int(greedy_action(self._logits, np))
        self._prev_action = action
        return action
