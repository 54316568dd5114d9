"""The ``info`` of every Alchemy env, declared once: fixed keys, fixed numpy dtypes, on reset and on every step.

Every env (the symbolic single and vector envs, the 3D envs, the JAX env) gives the keys of
:data:`INFO_KEYS`; the 3D envs add :data:`RPC_INFO_KEYS`. A key is never missing from one call and
present in the next, and its dtype never changes, so libraries that read ``info`` into fixed
specs (TorchRL's ``auto_register_info_dict``, ``SyncVectorEnv``'s info arrays) see one schema.
The single envs give numpy scalars (``np.int32``, ``np.float32``: immutable) and fresh 0-d ``bool`` arrays
(``SyncVectorEnv`` stacks numpy numbers into typed arrays, but a ``np.bool_``, not a number, into an object
array), the vector envs ``(num_envs,)`` arrays (with Gymnasium's ``_key`` masks, all set), the JAX env JAX
arrays of the same dtypes.

Structured, episode-level data (the chemistry, the items, the matrix events) is not in ``info``:
the symbolic envs give it as an :class:`~alchemy_gym.core.episodes.EpisodeRecord`
(``env.unwrapped.episode_record()``), the 3D envs' world events are ``env.unwrapped.last_events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import TrialItems, chemistry_of

if TYPE_CHECKING:
    from alchemy_gym.core.batch import GameBatch

__all__ = [
    "INFO_KEYS",
    "INFO_NAMES",
    "RPC_INFO_KEYS",
    "EpisodeRecord",
    "InfoKey",
    "batched",
    "info_table",
    "reset_info",
    "rpc_info",
    "step_info",
]


@dataclass(frozen=True)
class InfoKey:
    """One ``info`` key: its name, numpy dtype and meaning (the docs' table is made from these)."""

    name: str
    dtype: type
    doc: str


#: The keys of every env's ``info``.
INFO_KEYS: tuple[InfoKey, ...] = (
    InfoKey("trial", np.int32, "the trial the step was played in (0-based; `reset`: 0)"),
    InfoKey("trial_ended", np.bool_, "the step ended its trial"),
    InfoKey("trial_reward", np.float32, "reward of `trial` so far (its total when `trial_ended`; `reset`: 0)"),
    InfoKey("episode_return", np.float32, "reward of the episode so far (its return on the last step; `reset`: 0)"),
    InfoKey("episode_index", np.int32, "the fixed episode being played (evaluation level, `episodes=`); -1 if sampled"),
    InfoKey("discount", np.float32, "0 on the step that terminates the episode, else 1"),
    InfoKey(
        "valid_action",
        np.bool_,
        "the action was in the action space (the Gymnasium envs raise on others; the JAX env plays them as the no-op)",
    ),
)
#: The names of :data:`INFO_KEYS`, in order.
INFO_NAMES: tuple[str, ...] = tuple(key.name for key in INFO_KEYS)
#: The keys the 3D envs add.
RPC_INFO_KEYS: tuple[InfoKey, ...] = (
    InfoKey("world_seed", np.int64, "the seed of the current 3D world"),
    InfoKey("score", np.float32, "the server's `Score`"),
)

_DTYPES = {key.name: key.dtype for key in INFO_KEYS + RPC_INFO_KEYS}


_I32, _F32 = np.dtype(np.int32), np.dtype(np.float32)


# The single envs' numbers are numpy scalars: typed (``.dtype``, ``.shape == ()``) and immutable, so the same
# value may serve every step without one holder changing another's (Gymnasium's env checker warns about mutable
# objects shared between steps, such as one 0-d array); building them per key and step would cost more than the
# step itself. The bool flags are 0-d arrays (SyncVectorEnv stacks a ``np.bool_``, not a number, into an object
# array), so each step gets copies of these.
_FALSE, _TRUE = np.array(False), np.array(True)
_ONE, _ZERO = _F32.type(1.0), _F32.type(0.0)
_SMALL_INTS = tuple(_I32.type(i) for i in range(-1, 1024))  # trials and episode indices


@lru_cache(maxsize=4096)
def _float32(value: float) -> np.floating:
    return _F32.type(value)


def _int32(value: int) -> np.integer:
    return _SMALL_INTS[value + 1] if -1 <= value < 1023 else _I32.type(value)


def step_info(
    trial: int,
    trial_ended: bool,
    trial_reward: float,
    episode_return: float,
    episode_index: int | None,
    terminated: bool = False,
) -> dict[str, np.generic | np.ndarray]:
    """A single env's ``info``: values of :data:`INFO_KEYS`' dtypes, numpy scalars and fresh 0-d ``bool`` arrays (a new
    dict each call, so that wrappers may add keys)."""
    info = _step_info(trial, episode_index, trial_reward, episode_return, terminated).copy()
    info["trial_ended"] = (_TRUE if trial_ended else _FALSE).copy()
    info["valid_action"] = _TRUE.copy()
    return info


@lru_cache(maxsize=8192)
def _step_info(trial, episode_index, trial_reward, episode_return, terminated) -> dict[str, Any]:
    # the same values recur from step to step: built once (one dict per step would cost more than the step); the
    # flags are filled in per step (in the schema's order)
    return {
        "trial": _int32(trial),
        "trial_ended": None,
        "trial_reward": _float32(trial_reward),
        "episode_return": _float32(episode_return),
        "episode_index": _int32(-1 if episode_index is None else episode_index),
        "discount": _ZERO if terminated else _ONE,
        "valid_action": None,
    }


def reset_info(episode_index: int | None) -> dict[str, np.generic | np.ndarray]:
    """A single env's ``info`` after ``reset``: trial 0, nothing earned yet."""
    return step_info(0, False, 0.0, 0.0, episode_index)


def rpc_info(world_seed: int | None, score: float) -> dict[str, np.generic]:
    """The 3D envs' own keys (numpy scalars); ``world_seed`` -1 before the first world."""
    return {"world_seed": np.int64(-1 if world_seed is None else world_seed), "score": np.float32(score)}


def batched(values: dict[str, Any], num_envs: int) -> dict[str, np.ndarray]:
    """A vector env's ``info`` from per-key ``(num_envs,)`` values: cast to the schema's dtypes, with ``_key``
    masks (all set: every sub-env gives every key)."""
    info: dict[str, np.ndarray] = {}
    for name, value in values.items():
        info[name] = np.asarray(value, dtype=_DTYPES[name])
        info["_" + name] = np.ones(num_envs, dtype=np.bool_)
    return info


def info_table(keys: tuple[InfoKey, ...] = INFO_KEYS) -> str:
    """The markdown table (key, dtype, meaning) of ``keys`` (the docs hold it; a test checks them)."""
    rows = ["| key | dtype | meaning |", "|---|---|---|"]
    rows += [f"| `{key.name}` | {np.dtype(key.dtype).name} | {key.doc} |" for key in keys]
    return "\n".join(rows)


@dataclass(frozen=True)
class EpisodeRecord:
    """What happened in one symbolic episode: its chemistry, items, trial rewards and matrix events.

    ``env.unwrapped.episode_record()`` gives the current (or just finished) episode's; the vector
    env's ``episode_records()`` those of the episodes that ended on its last step.
    """

    #: The hidden chemistry.
    chemistry: Chemistry
    #: int8 ``(trials, 15)``: each trial's latent stones then potions, -1 for none (:meth:`trial_items` reads them).
    items: np.ndarray
    #: float64 ``(trials,)``: the reward of each trial (0 for trials not played yet).
    trial_rewards: np.ndarray
    #: int8 ``(trials, 3, 13)``: the order of stone → potion / cauldron events (spec §7.2), -1 if none.
    matrix_events: np.ndarray
    #: The fixed episode played (evaluation level, ``episodes=``), ``None`` if sampled.
    episode_index: int | None

    @classmethod
    def of_rows(cls, batch: GameBatch, rows: np.ndarray) -> list[EpisodeRecord]:
        """The records of ``rows``' current (or last) episodes (copies: later steps do not change them)."""
        return cls.of_arrays(*snapshot(batch, rows))

    @classmethod
    def of_arrays(cls, chem, items, trial_rewards, matrix_events, episodes) -> list[EpisodeRecord]:
        """The records of the rows of a :func:`snapshot`."""
        indices = [e if e >= 0 else None for e in episodes.tolist()]
        return [
            cls(chemistry_of(*c), items[j], trial_rewards[j], matrix_events[j], indices[j])
            for j, c in enumerate(chem.tolist())
        ]

    @property
    def episode_return(self) -> float:
        """The sum of the trial rewards."""
        return float(self.trial_rewards.sum())

    def trial_items(self) -> list[TrialItems]:
        """Each trial's items as :class:`~alchemy_gym.core.episodes.TrialItems`."""
        return [TrialItems.from_row(row) for row in self.items]


def snapshot(batch: GameBatch, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Copies of what :class:`EpisodeRecord` holds of ``rows``: ``(chem, items, trial_rewards, matrix_events,
    episode)``, taken before the rows start new episodes."""
    rows = np.asarray(rows, dtype=np.intp)
    b = batch
    return b.chem[rows], b.items[rows], b.trial_rewards[rows], b.matrix_events[rows], b.episode[rows]
