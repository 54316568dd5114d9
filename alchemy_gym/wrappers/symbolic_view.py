"""The symbolic view of the 3D env: a symbolic game kept in step with the 3D world from its events.

dm_alchemy's ``SymbolicAlchemyWrapper`` keeps a symbolic game in sync with the Unity env so that
3D agents can be given the symbolic observation and chemistry observations (interface spec §7).
:class:`SymbolicView` does the same for :class:`~alchemy_gym.envs.rpc.RpcAlchemyEnv` (and
:class:`SymbolicViewVector` for its vector env): after every ``reset`` and ``step`` it follows
the world events of the env's ``last_events`` in order,

| event | what the view does |
|---|---|
| ``ChemistryCreated`` | reads the chemistry (maps, graph, rotation) and the reward weights |
| ``Stone/PotionCreated`` | collects the trial's items (a creation after ``TrialStarted`` starts anew) |
| ``TrialStarted`` | starts the symbolic trial with the collected items (a new episode on trial 0) |
| ``TrialEnded`` | ends the collection (the symbolic trial ends when the next one starts) |
| ``PotionUsed`` | plays "stone into potion" (slots found by instance id) |
| ``StoneUsed`` | plays "stone into the cauldron" |
| ``CauldronCreated`` | nothing |

and adds ``"symbolic_obs"`` (the 39 floats of §4.4) and any ``see_chemistries`` entries to the
observation ``Dict``. Items and chemistry are read from what the events show (perceived features
and colours, through the chemistry's maps), and every use is checked against the event (the
stone's new latent state, the reward): a mismatch, an event out of order, or an instance id
the view does not know raises :class:`SymbolicViewError` at once, so the view is never silently
wrong. Event names outside the table are skipped (counted in ``skipped_events``).

Needs an env that sends events (``event_regex`` matching ``DeepMind/...``, ``decode_events=True``,
the defaults of the 3D envs). Checked against our own server, which sends both its events and its
own ``symbolic_obs``; the real Unity server's events were not available here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

try:  # gymnasium >= 1.0
    from gymnasium.vector import VectorWrapper
except ImportError:  # gymnasium 0.29: SymbolicViewVector refuses to start (its vector env needs 1.x)
    from gymnasium.vector import VectorEnvWrapper as VectorWrapper

from alchemy_gym.core import graphs
from alchemy_gym.core.batch import observation_bounds
from alchemy_gym.core.belief import ChemistryObserver, ChemistrySeen
from alchemy_gym.core.chemistry import Chemistry, LevelRules
from alchemy_gym.core.episodes import TrialItems
from alchemy_gym.core.game import AlchemyGame, encode_action
from alchemy_gym.core.items import (
    DEFAULT_REWARD_WEIGHTS,
    PERCEIVED_POTION,
    STONE_COORDS,
    align_coords,
    coords_to_index,
    potion_index,
    rotation_from_angles,
)
from alchemy_gym.render import POTION_RGB, STONE_RGB, STONE_SCALE
from alchemy_gym.rpc.names import ROUNDNESS

__all__ = ["EventFollower", "SymbolicView", "SymbolicViewError", "SymbolicViewVector", "chemistry_from_event"]

#: A trial long enough never to end by steps: in the view only the events end trials.
_NO_STEP_LIMIT = 2**31 - 1


class SymbolicViewError(ValueError):
    """The events cannot be followed: missing, out of order, unknown ids, or not the game's outcome."""


def _nearest(value: float, choices: Sequence[float], what: str) -> int:
    """Index of the choice ``value`` equals (to 2 decimals), or a clear error."""
    for i, choice in enumerate(choices):
        if abs(float(value) - choice) < 5e-3:
            return i
    raise SymbolicViewError(f"{what} {value!r} is none of {list(choices)}")


def _colour_index(color: Mapping[str, float], table: Sequence[Sequence[float]], what: str) -> int:
    rgb = (
        round(float(color.get("r", 0.0)), 2),
        round(float(color.get("g", 0.0)), 2),
        round(float(color.get("b", 0.0)), 2),
    )
    for i, candidate in enumerate(table):
        if all(abs(a - round(b, 2)) < 1e-6 for a, b in zip(rgb, candidate)):
            return i
    raise SymbolicViewError(f"{what} colour {rgb} is not one of the task's colours")


def perceived_stone(properties: Mapping[str, Any]) -> tuple[int, int, int]:
    """The perceived coordinates (colour, size, roundness in {-1, 0, 1}) of an event's ``StoneProperties``."""
    colour = _colour_index(properties.get("color", {}), STONE_RGB, "stone") - 1
    size = _nearest(properties.get("size", 0.0), STONE_SCALE, "stone size") - 1
    roundness = _nearest(properties.get("roundness", 0.0), ROUNDNESS, "stone roundness") - 1
    return colour, size, roundness


def perceived_potion(properties: Mapping[str, Any]) -> int:
    """The perceived potion index (colour) of an event's ``PotionProperties``."""
    colour = properties.get("color", {})
    return _colour_index(colour.get("color", colour), POTION_RGB, "potion")


def chemistry_from_event(detail: Mapping[str, Any]) -> tuple[Chemistry, tuple]:
    """The :class:`Chemistry` and reward weights of a ``ChemistryCreated`` event's detail.

    The maps are read off what the stones and potions look like against their latent labels; if
    the latent axes are labelled in another order than the perceived ones (the Unity server may do
    so, interface spec §6), the labels are relabelled first, as dm_alchemy's converter does.
    """
    try:
        angles = detail["rotation_mapping"]["rotation_angles"]
        rotation = rotation_from_angles([-abs(float(angles.get(k, 0.0))) for k in "xyz"])
        stones = detail["chemistry"]["stones"]
        potions = detail["chemistry"]["potions"]
    except (KeyError, TypeError, ValueError) as exc:
        raise SymbolicViewError(f"a ChemistryCreated event without a readable chemistry or rotation: {exc}") from None
    if len(stones) != 8 or len(potions) != 6:
        raise SymbolicViewError(
            f"a chemistry has 8 stones and 6 potions, the event has {len(stones)} and {len(potions)}"
        )
    aligned, latent = [], []
    for stone in stones:
        coords = align_coords(perceived_stone(stone), rotation)
        if coords is None:
            raise SymbolicViewError(f"stone {stone} is not a cube vertex under rotation {rotation}")
        aligned.append(np.array(coords))
        latent.append(np.array(stone["latent"]["coordinates"], dtype=np.int64))
    aligned, latent = np.array(aligned), np.array(latent)
    # latent axis j is perceived axis perm[j], with sign pos_dir[perm[j]]: latent_j = aligned_perm[j] * sign
    perm, signs = [], []
    for j in range(3):
        for k in range(3):
            for sign in (1, -1):
                if k not in perm and np.array_equal(latent[:, j], aligned[:, k] * sign):
                    perm.append(k)
                    signs.append(sign)
                    break
            if len(perm) > j:
                break
        if len(perm) <= j:
            raise SymbolicViewError("the stones' latent labels do not follow one map of their perceived coordinates")
    pos_dir = [0, 0, 0]
    for j, k in enumerate(perm):
        pos_dir[k] = signs[j]
    stone_map = coords_to_index(pos_dir)

    def relabel(index: int) -> int:  # a latent stone in the perceived axis order
        coords = STONE_COORDS[index]
        new = [0, 0, 0]
        for j, k in enumerate(perm):
            new[k] = int(coords[j])
        return coords_to_index(new)

    perceived_of_latent = {}
    mask = 0
    for potion in potions:
        label = potion["label"]
        direction = 1 if label.get("direction") in ("POSITIVE", 1) else -1
        dim = perm[int(label.get("dimension_index", 0))]
        perceived_of_latent[potion_index(dim, direction)] = perceived_potion(potion)
        for reaction in potion.get("reactions", ()):
            a, b = relabel(int(reaction["from_stone_index"])), relabel(int(reaction["to_stone_index"]))
            if (a, b) not in graphs.EDGE_INDEX:
                raise SymbolicViewError(f"reaction {a} -> {b} is not a cube edge")
            mask |= 1 << graphs.EDGE_INDEX[(a, b)]
    wanted = [perceived_of_latent.get(p, -1) for p in range(6)]
    matches = [pm for pm in range(48) if PERCEIVED_POTION[pm].tolist() == wanted]
    if not matches:
        raise SymbolicViewError(f"no potion map gives the potions' colours {wanted}")
    reward = detail.get("reward_mapping") or {}
    weights = (
        tuple(float(c) for c in reward.get("coefficients", DEFAULT_REWARD_WEIGHTS[0])),
        float(reward.get("offset", DEFAULT_REWARD_WEIGHTS[1])),
        float(reward.get("bonus", DEFAULT_REWARD_WEIGHTS[2])),
    )
    return Chemistry(matches[0], stone_map, mask, rotation), weights


class EventFollower:
    """The symbolic game of one 3D world, advanced event by event (the state machine of :class:`SymbolicView`).

    Args:
        rules: the level's rules (the belief prior of belief-state chemistry observations).
        see_chemistries: ``{name: ChemistrySeen}`` chemistry observations to give.
        num_trials: trials per episode (10).
    """

    def __init__(
        self, rules: LevelRules, see_chemistries: Mapping[str, ChemistrySeen] | None = None, num_trials: int = 10
    ):
        self.rules = rules
        self.seen = dict(see_chemistries or {})
        self.num_trials = num_trials
        self.skipped_events = 0
        self._weights: tuple | None = None
        self._new_game(DEFAULT_REWARD_WEIGHTS)
        self.chemistry: Chemistry | None = None
        self._collect: tuple[list, list] = ([], [])
        self._collecting = False
        self._slots: tuple[dict, dict] = ({}, {})
        self._rng = np.random.default_rng()
        self._waited = 0

    def _new_game(self, weights: tuple) -> None:
        if weights == self._weights:
            return
        self._weights = weights
        self.game = AlchemyGame(num_trials=self.num_trials, max_steps_per_trial=_NO_STEP_LIMIT, reward_weights=weights)
        self.observer = ChemistryObserver(self.game, self.seen, self.rules) if self.seen else None

    def seed(self, rng: np.random.Generator) -> None:
        """The generator that draws the chemistry observations' contents (one draw per episode)."""
        self._rng = rng

    # ------------------------------------------------------------------ events

    def restart(self) -> None:
        """A reset of the 3D env: the next episode's ChemistryCreated must come within ``CHEMISTRY_WITHIN`` steps."""
        self.chemistry = None
        self._waited = 0

    def follow(self, events: Iterable) -> None:
        """Advance through ``events`` (:class:`~alchemy_gym.rpc.events.WorldEvent` objects, in order)."""
        events = list(events)
        if self.chemistry is None and not any(str(getattr(e, "name", "")).endswith("ChemistryCreated") for e in events):
            self._waited += 1
            if self._waited > CHEMISTRY_WITHIN:
                raise SymbolicViewError(
                    f"no ChemistryCreated event within {CHEMISTRY_WITHIN} steps of the reset: the env sends no Alchemy "
                    f"events; {_NO_EVENTS}"
                )
        for event in events:
            name = str(getattr(event, "name", ""))
            kind = name.split(":")[0].rsplit("/", 1)[-1]
            handler = getattr(self, f"_on_{kind}", None)
            if handler is None:
                self.skipped_events += 1
                continue
            detail = event.detail
            if detail is None:
                raise SymbolicViewError(f"event {name} carries no decoded detail: make the env with decode_events=True")
            handler(detail)

    def _on_ChemistryCreated(self, detail) -> None:  # noqa: N802 (event names)
        chemistry, weights = chemistry_from_event(detail)
        self.chemistry = chemistry
        self._new_game(weights)
        self._collect, self._collecting = ([], []), False

    def _on_CauldronCreated(self, detail) -> None:  # noqa: N802
        pass

    def _created(self, which: int, instance: int, latent: int) -> None:
        if not self._collecting:
            self._collect, self._collecting = ([], []), True
        self._collect[which].append((instance, latent))

    def _on_StoneCreated(self, detail) -> None:  # noqa: N802
        self._created(0, int(detail["stone_instance_id"]), self._latent_stone(detail["stone_properties"]))

    def _on_PotionCreated(self, detail) -> None:  # noqa: N802
        self._created(1, int(detail["potion_instance_id"]), self._latent_potion(detail["potion_properties"]))

    def _on_TrialStarted(self, detail) -> None:  # noqa: N802
        trial = int(detail.get("trial_id", 0))
        if self.chemistry is None:
            raise SymbolicViewError(f"TrialStarted({trial}) before any ChemistryCreated event")
        stones, potions = self._collect
        if len(stones) > 3 or len(potions) > 12:
            raise SymbolicViewError(
                f"a trial holds at most 3 stones and 12 potions, {len(stones)} and {len(potions)} were created"
            )
        items = TrialItems(tuple(latent for _, latent in stones), tuple(latent for _, latent in potions))
        game = self.game
        if trial == 0:
            empty = TrialItems((), ())
            game.start_episode(self.chemistry, items=[items] + [empty] * (self.num_trials - 1))
            if self.observer is not None:
                self.observer.new_episode(self._rng)
        else:
            if game.trial_number != trial - 1:
                raise SymbolicViewError(
                    f"TrialStarted({trial}) while the symbolic game is in trial {game.trial_number}"
                )
            game.set_trial_items(trial, items)
            game.end_trial()
        self._slots = ({i: s for s, (i, _) in enumerate(stones)}, {i: s for s, (i, _) in enumerate(potions)})
        self._collecting = False

    def _on_TrialEnded(self, detail) -> None:  # noqa: N802
        self._collect, self._collecting = ([], []), False

    def _slot(self, which: int, instance: int) -> int:
        if self.game.trial_number < 0:
            raise SymbolicViewError("an item was used outside a trial (no TrialStarted event since the last episode)")
        slot = self._slots[which].get(instance)
        if slot is None:
            kind = ("stone", "potion")[which]
            raise SymbolicViewError(f"{kind} instance {instance} was not created in this trial")
        return slot

    def _on_PotionUsed(self, detail) -> None:  # noqa: N802
        stone = self._slot(0, int(detail["stone_instance_id"]))
        potion = self._slot(1, int(detail["potion_instance_id"]))
        game = self.game
        game.step(encode_action(stone, potion, game.end_trial_action))
        expected = self._latent_stone(detail["stone_properties_new"])
        if game.stones[stone] != expected:
            raise SymbolicViewError(
                f"PotionUsed: the symbolic stone became latent {game.stones[stone]}, the event says {expected}"
            )

    def _on_StoneUsed(self, detail) -> None:  # noqa: N802
        stone = self._slot(0, int(detail["stone_instance_id"]))
        game = self.game
        reward, _ = game.step(encode_action(stone, -1, game.end_trial_action))
        if "reward" in detail and abs(float(detail["reward"]) - reward) > 1e-4:
            raise SymbolicViewError(f"StoneUsed: the symbolic reward is {reward}, the event says {detail['reward']}")

    # ------------------------------------------------------------- conversions

    def _need_chemistry(self) -> Chemistry:
        if self.chemistry is None:
            raise SymbolicViewError("an item was created or used before any ChemistryCreated event")
        return self.chemistry

    def _latent_stone(self, properties) -> int:
        c = self._need_chemistry()
        aligned = align_coords(perceived_stone(properties), c.rotation)
        if aligned is None:
            raise SymbolicViewError(f"stone {properties} is not a cube vertex under the chemistry's rotation")
        return coords_to_index(np.array(aligned) * np.array(c.pos_dir))

    def _latent_potion(self, properties) -> int:
        perceived = perceived_potion(properties)
        return int(PERCEIVED_POTION[self._need_chemistry().potion_map].tolist().index(perceived))

    # ------------------------------------------------------------ observation

    def observation(self) -> dict[str, np.ndarray]:
        """``{"symbolic_obs": 39 floats}`` and the chemistry observations."""
        out = {"symbolic_obs": self.game.obs.copy()}
        if self.observer is not None:
            out |= self.observer.observe()
        return out


def _check_env(observation_space, key: str, seen: Mapping) -> None:
    if not isinstance(observation_space, spaces.Dict):
        raise ValueError(f"SymbolicView wraps an env with Dict observations (the 3D envs), got {observation_space}")
    taken = [name for name in (key, *seen) if name in observation_space.spaces]
    if taken:
        raise ValueError(f"the env already observes {taken}: give the view other names (key=..., see_chemistries=...)")


def _view_spaces(key: str, seen: Mapping[str, ChemistrySeen]) -> dict[str, spaces.Box]:
    low, high = observation_bounds(True)
    out = {key: spaces.Box(low, high, shape=low.shape, dtype=np.float32)}
    out |= {name: spaces.Box(0.0, 1.0, shape=(s.size,), dtype=np.float32) for name, s in seen.items()}
    return out


def _level_rules(env, level_name: str | None) -> LevelRules:
    from alchemy_gym.levels import find_level

    if level_name is None:
        level_name = getattr(getattr(env.unwrapped, "settings", None), "level_name", None)
    if level_name is None:
        raise ValueError("SymbolicView could not tell the level of the env: pass level_name=...")
    return find_level(level_name).rules


_NO_EVENTS = (
    "the symbolic view follows the world events: make the 3D env with event_regex='DeepMind/.*' (the default) "
    "and decode_events=True"
)
#: Steps after a reset within which the first ChemistryCreated event must come (the Unity server takes one or two).
CHEMISTRY_WITHIN = 10


def _prepare(env, observation_space, see_chemistries, key: str, level_name: str | None):
    """The checks and settings both views share: ``(chemistry observations, the level's rules)``."""
    from alchemy_gym.envs.symbolic_settings import check_see_chemistries

    seen = check_see_chemistries("see_chemistries", see_chemistries)
    _check_env(observation_space, key, seen)
    _check_events_subscribed(env)
    return seen, _level_rules(env, level_name)


def _events(env, where: str) -> list:
    events = getattr(env.unwrapped, "last_events", None)
    if events is None or (isinstance(events, list) and events and all(e is None for e in events)):
        raise SymbolicViewError(f"{where}: the env sent no events; {_NO_EVENTS}")
    return events


def _check_events_subscribed(env) -> None:
    settings = getattr(env.unwrapped, "settings", None)
    regex = getattr(settings, "event_regex", "DeepMind/.*")
    if regex is None or getattr(settings, "decode_events", True) is False:
        raise SymbolicViewError(f"the env was made with event_regex={regex!r}: {_NO_EVENTS}")


class SymbolicView(gym.Wrapper):
    """A 3D env with the symbolic view added to its observation (see the module docstring).

    Args:
        env: a 3D env (:class:`~alchemy_gym.envs.rpc.RpcAlchemyEnv`) sending world events.
        see_chemistries: chemistry observations to add (``{name: ChemistrySeen or "ground_truth" / ...}``).
        key: the name of the symbolic observation (``"symbolic_obs"``).
        level_name: the level (default: the env's), whose rules are the belief states' prior.
    """

    def __init__(
        self,
        env: gym.Env,
        see_chemistries: Mapping[str, ChemistrySeen | str] | None = None,
        *,
        key: str = "symbolic_obs",
        level_name: str | None = None,
    ) -> None:
        super().__init__(env)
        seen, rules = _prepare(env, env.observation_space, see_chemistries, key, level_name)
        self.key = key
        self.follower = EventFollower(rules, seen)
        self.observation_space = spaces.Dict(dict(env.observation_space.spaces) | _view_spaces(key, seen))

    @property
    def game(self) -> AlchemyGame:
        """The symbolic game in step with the 3D world."""
        return self.follower.game

    @property
    def skipped_events(self) -> int:
        return self.follower.skipped_events

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.follower.seed(self.np_random)
        self.follower.restart()
        self.follower.follow(_events(self.env, "reset"))
        return self._observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.follower.follow(_events(self.env, "step"))
        return self._observation(obs), reward, terminated, truncated, info

    def _observation(self, obs: Mapping) -> dict:
        view = self.follower.observation()
        view[self.key] = view.pop("symbolic_obs")
        return dict(obs) | view


class SymbolicViewVector(VectorWrapper):
    """:class:`SymbolicView` for a 3D vector env: one follower per sub-env, batched view observations."""

    def __init__(
        self,
        env,
        see_chemistries: Mapping[str, ChemistrySeen | str] | None = None,
        *,
        key: str = "symbolic_obs",
        level_name: str | None = None,
    ) -> None:
        from gymnasium.vector.utils import batch_space

        from alchemy_gym.envs.gymnasium_version import require_vector_api

        require_vector_api("SymbolicViewVector")
        super().__init__(env)
        seen, rules = _prepare(env, env.single_observation_space, see_chemistries, key, level_name)
        self.key = key
        self.followers = [EventFollower(rules, seen) for _ in range(env.num_envs)]
        self.single_observation_space = spaces.Dict(dict(env.single_observation_space.spaces) | _view_spaces(key, seen))
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for i, follower in enumerate(self.followers):
            follower.seed(np.random.default_rng(None if kwargs.get("seed") is None else [int(kwargs["seed"]), i]))
            follower.restart()
        self._follow("reset")
        return self._observation(obs), info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._follow("step")
        return self._observation(obs), reward, terminated, truncated, info

    def _follow(self, where: str) -> None:
        events = _events(self.env, where)
        for follower, sub_env_events in zip(self.followers, events):
            if sub_env_events is not None:
                follower.follow(sub_env_events)

    def _observation(self, obs: Mapping) -> dict:
        views = [f.observation() for f in self.followers]
        batched = {name: np.stack([v[name] for v in views]) for name in views[0]}
        batched[self.key] = batched.pop("symbolic_obs")
        return dict(obs) | batched
