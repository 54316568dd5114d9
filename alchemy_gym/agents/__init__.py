"""Agents that play symbolic Alchemy: replay of published events, bots, the ideal observer, trained RL² agents.

Every agent follows :class:`~alchemy_gym.agents.base.Agent`: ``reset(game, episode)``
at each episode start and ``act(game) -> int`` at every step, where ``game`` is
an :class:`~alchemy_gym.core.game.AlchemyGame` or a symbolic env.

>>> import gymnasium as gym, alchemy_gym
>>> from alchemy_gym.agents import make_agent, run_env_episode
>>> env = gym.make("Alchemy/SymbolicEvaluation-v0")
>>> rewards = run_env_episode(make_agent("positive"), env, episode=0)
>>> sum(rewards)
59.0
"""

from __future__ import annotations

from typing import Any

from alchemy_gym.agents.base import Agent, as_game, run_episode
from alchemy_gym.agents.bots import PositiveStonesBot, RandomActionBot
from alchemy_gym.levels import EVALUATION_PRIOR

#: Agent names accepted by :func:`make_agent` (plus ``replay:NAME_OR_PATH``).
AGENT_NAMES = (
    "random", "positive", "ideal-observer", "ideal-explorer", "search-oracle", "rl2", "rl2-belief", "rl2-ground-truth",
)  # fmt: skip

__all__ = [
    "AGENT_NAMES",
    "Agent",
    "PositiveStonesBot",
    "RandomActionBot",
    "as_game",
    "make_agent",
    "run_env_episode",
    "run_episode",
]


def make_agent(spec: str, level: str = EVALUATION_PRIOR, seed: int | None = None) -> Agent:
    """Build an agent from its name: one of :data:`AGENT_NAMES` or ``replay:NAME_OR_PATH``.

    Args:
        spec: the agent's name.
        level: the level the agent will play (the prior of the ideal observer and of ``rl2-belief``'s input).
        seed: seed of the random bot.
    """
    if not isinstance(spec, str):
        raise TypeError(f"agent name must be a str, got {type(spec).__name__}")
    if spec.startswith("replay:"):
        from alchemy_gym.agents.replay_agent import ReplayAgent

        source = spec[len("replay:") :]
        if not source:
            raise ValueError("replay needs events: replay:NAME (a packaged agent) or replay:PATH")
        return ReplayAgent(source)
    if spec == "random":
        return RandomActionBot(seed=seed)
    if spec == "positive":
        return PositiveStonesBot()
    if spec in ("ideal-observer", "ideal-explorer", "search-oracle"):
        from alchemy_gym.agents.ideal_observer import IdealObserver

        return IdealObserver(level, minimise_world_states=spec == "ideal-explorer", oracle=spec == "search-oracle")
    if spec in ("rl2", "rl2-belief", "rl2-ground-truth"):
        from alchemy_gym.agents.rl2 import RL2Agent

        return RL2Agent(spec, level)
    raise ValueError(f"unknown agent {spec!r}: allowed {', '.join(AGENT_NAMES)} or replay:NAME_OR_PATH")


def run_env_episode(agent: Agent, env: Any, *, episode: int | None = None, seed: int | None = None) -> list[float]:
    """Reset a symbolic Gymnasium env and play one episode through ``env.step``; returns the trial rewards.

    ``episode`` selects an evaluation episode (``reset(options={"episode": i})``).
    """
    options = {"episode": episode} if episode is not None else None
    env.reset(seed=seed, options=options)
    game = as_game(env)
    agent.reset(game, episode)
    rewards = [0.0] * game.num_trials
    done = False
    while not done:
        trial = game.trial_number
        _, reward, terminated, truncated, _ = env.step(agent.act(game))
        rewards[trial] += reward
        done = terminated or truncated
    return rewards
