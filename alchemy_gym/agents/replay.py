"""Replay of published agent events (matrix events, spec §7.2) through the evaluation episodes."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from alchemy_gym.core.game import AlchemyGame, encode_action
from alchemy_gym.data import evaluation_episodes, events_to_actions, load_agent_events


def replay_episode(game: AlchemyGame, episode, matrix_events: np.ndarray) -> list[float]:
    """Replay one episode's matrix events (trials, 3, 13) on ``game``; returns the trial rewards.

    Each trial's events are applied in time order as slot-based actions; the
    trial is then finished (as the no-ops of dm_alchemy's ``ReplayBot`` would).
    """
    game.start_episode(episode.chemistry, items=episode.trials)
    end_trial_action = game.end_trial_action
    for trial in range(game.num_trials):
        for stone, potion in events_to_actions(matrix_events[trial]):
            if game.trial_number != trial:
                break
            game.step(encode_action(stone, potion, end_trial_action))
        if game.trial_number == trial:
            game.end_trial()
    return list(game.trial_rewards)


def replay_agent_events(
    source: str | os.PathLike, *, episodes: Iterable[int] | None = None, progress: bool = False
) -> np.ndarray:
    """Trial rewards, shape (episodes, trials), of replaying an ``EvaluationSetEvents`` file.

    ``source`` is a packaged agent name or a path; ``episodes`` selects episode
    indices (default all episodes in the file, which must not be more than the
    1000 evaluation episodes).
    """
    events = load_agent_events(source)
    chemistries = evaluation_episodes()
    if events.shape[0] > len(chemistries):
        raise ValueError(
            f"{source!r} holds {events.shape[0]} episodes but there are only {len(chemistries)} evaluation episodes"
        )
    num_trials = events.shape[1]
    if num_trials > len(chemistries[0].trials):
        raise ValueError(f"{source!r} has {num_trials} trials per episode; evaluation episodes have 10")
    if episodes is None:
        indices = list(range(events.shape[0]))
    else:
        indices = [int(i) for i in episodes]
        bad = [i for i in indices if not 0 <= i < events.shape[0]]
        if bad:
            raise ValueError(f"episodes {bad[:5]} not in {source!r}: allowed 0..{events.shape[0] - 1}")
    game = AlchemyGame(num_trials=num_trials)
    out = np.zeros((len(indices), num_trials), dtype=np.float64)
    iterator: Iterable[int] = indices
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(indices, desc=f"replay {os.path.basename(str(source))}", unit="episode")
    for row, i in enumerate(iterator):
        out[row] = replay_episode(game, chemistries[i], events[i])
    return out
