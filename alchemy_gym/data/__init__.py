"""Shipped data: the 1000 evaluation episodes and the published agent events (spec §7).

The files come from DeepMind's dm_alchemy (Apache-2.0, see ``LICENSE`` beside
them), compressed with xz. They are serialised protobuf messages; the schema
is built in code (:mod:`alchemy_gym.data.protos`) and parsed by the protobuf
library. Nothing here is imported by ``import alchemy_gym``: loading happens on
first use and is cached.
"""

from __future__ import annotations

import lzma
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import EpisodeSource
from alchemy_gym.core.game import CAULDRON, STONE_BLOCK, FixedEpisode, TrialItems
from alchemy_gym.core.graphs import graph_from_edge_values
from alchemy_gym.core.items import MAX_POTIONS, MAX_STONES, rotation_from_angles

NUM_EVALUATION_EPISODES = 1000
#: Names of the agents whose events ship with the package.
AGENT_EVENT_NAMES = ("baseline", "belief_state_predict", "ground_truth_predict", "ideal_observer", "search_oracle")


#: One fixed evaluation episode: its chemistry and the items of each trial.
EvaluationEpisode = FixedEpisode


def _read_package_file(relative: str) -> bytes:
    with resources.files(__name__).joinpath(relative).open("rb") as f:
        return lzma.decompress(f.read())


def _read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    data = path.read_bytes()
    if data[:6] == b"\xfd7zXZ\x00":
        try:
            data = lzma.decompress(data)
        except lzma.LZMAError as e:
            raise ValueError(f"{str(path)!r} looks xz-compressed but does not decompress: {e}") from e
    return data


def _parse(message_cls, data: bytes, what: str):
    from google.protobuf.message import DecodeError

    message = message_cls()
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(f"{what} is not a valid serialised {message_cls.DESCRIPTOR.full_name} message: {e}") from e
    return message


def parse_chemistries(data: bytes, what: str = "chemistries data") -> tuple[EvaluationEpisode, ...]:
    """Parse a serialised ``alchemy.ChemistriesAndItems`` message."""
    from alchemy_gym.data.protos import messages

    message = _parse(messages().ChemistriesAndItems, data, what)
    episodes = []
    for entry in message.chemistries:
        chem = entry.chemistry
        rotation = rotation_from_angles(chem.rotation) if len(chem.rotation) else 0
        chemistry = Chemistry(
            potion_map=chem.potion_map,
            stone_map=chem.stone_map,
            graph=graph_from_edge_values(list(chem.graph.edge_present)),
            rotation=rotation,
        )
        trials = tuple(TrialItems(tuple(t.stones), tuple(t.potions)) for t in entry.items.trial_items)
        episodes.append(EvaluationEpisode(chemistry, trials))
    if not episodes:
        raise ValueError(f"{what} holds no episodes")
    return tuple(episodes)


@lru_cache(maxsize=1)
def evaluation_episodes() -> tuple[EvaluationEpisode, ...]:
    """The 1000 fixed evaluation episodes (``alchemy/evaluation_episodes/0..999``), cached."""
    return parse_chemistries(_read_package_file("chemistries.xz"), "the packaged chemistries file")


@lru_cache(maxsize=1)
def evaluation_source() -> EpisodeSource:
    """The evaluation episodes as a game's episode source (loaded on first use, shared by every game)."""
    return EpisodeSource.fixed(evaluation_episodes)


def load_chemistries(path: str | os.PathLike) -> tuple[EvaluationEpisode, ...]:
    """Load a ``ChemistriesAndItems`` file (raw or xz-compressed) from ``path``."""
    return parse_chemistries(_read_bytes(path), repr(str(path)))


def parse_agent_events(data: bytes, what: str = "agent events") -> np.ndarray:
    """Parse a serialised ``alchemy.EvaluationSetEvents`` message.

    Returns an int16 array of shape (episodes, trials, 3, 13): the matrix events
    of §7.2 (order of each stone → potion / cauldron event, -1 if none).
    """
    from alchemy_gym.data.protos import messages

    message = _parse(messages().EvaluationSetEvents, data, what)
    episodes = message.episode_events
    if not len(episodes):
        raise ValueError(f"{what} holds no episodes")
    num_trials = max(len(e.trial_events) for e in episodes)
    out = np.full((len(episodes), num_trials, MAX_STONES, STONE_BLOCK), -1, dtype=np.int16)
    for i, episode in enumerate(episodes):
        for t, trial in enumerate(episode.trial_events):
            shape = tuple(trial.shape)
            if shape != (MAX_STONES, MAX_POTIONS + 1) or len(trial.entries) != MAX_STONES * STONE_BLOCK:
                raise ValueError(
                    f"{what}: episode {i} trial {t} has a matrix of shape {shape} with {len(trial.entries)} "
                    f"entries; expected shape ({MAX_STONES}, {MAX_POTIONS + 1})"
                )
            out[i, t] = np.asarray(trial.entries, dtype=np.int16).reshape(MAX_STONES, STONE_BLOCK)
    return out


@lru_cache(maxsize=len(AGENT_EVENT_NAMES))
def _packaged_agent_events(name: str) -> np.ndarray:
    events = parse_agent_events(_read_package_file(f"agent_events/{name}.xz"), f"the packaged {name!r} events")
    events.setflags(write=False)
    return events


def load_agent_events(source: str | os.PathLike) -> np.ndarray:
    """Matrix events of a published agent by name (one of :data:`AGENT_EVENT_NAMES`) or from a file path."""
    if isinstance(source, str) and source in AGENT_EVENT_NAMES:
        return _packaged_agent_events(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"agent events source must be a name or a path, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"no agent events file at {str(path)!r}; packaged agents are {', '.join(AGENT_EVENT_NAMES)}"
        )
    return parse_agent_events(_read_bytes(path), repr(str(path)))


def events_to_actions(matrix: np.ndarray) -> list[tuple[int, int]]:
    """A trial's matrix events (3, 13) as ``(stone slot, potion slot or -1 for the cauldron)`` in time order."""
    stones, cols = np.nonzero(matrix >= 0)
    order = np.argsort(matrix[stones, cols], kind="stable")
    return [(int(stones[i]), -1 if cols[i] == CAULDRON else int(cols[i])) for i in order]
