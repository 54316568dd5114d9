"""alchemy-gym: DeepMind's Alchemy meta-RL benchmark as Gymnasium environments.

Importing the package registers every level under the ``Alchemy/`` namespace::

    import gymnasium as gym
    import alchemy_gym

    env = gym.make(alchemy_gym.env_id("alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"))

See :data:`alchemy_gym.levels.LEVELS` for the table of levels and IDs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alchemy_gym.levels import Level, env_id, levels

if TYPE_CHECKING:
    import numpy as np

__version__ = "0.1.0"
__all__ = ["Level", "env_id", "levels", "register_envs", "replay_agent_events", "__version__"]


def replay_agent_events(path, *, episodes=None, progress: bool = False) -> np.ndarray:
    """Trial rewards of replaying published agent events through the evaluation episodes.

    Args:
        path: a packaged agent name (``"ideal_observer"``, ``"search_oracle"``,
            ``"ground_truth_predict"``, ``"belief_state_predict"``, ``"baseline"``)
            or the path of an ``EvaluationSetEvents`` file (raw or xz).
        episodes: optional iterable of episode indices (default: all in the file).
        progress: show a progress bar.

    Returns:
        float array of shape (episodes, trials).
    """
    from alchemy_gym.agents.replay import replay_agent_events as _replay

    return _replay(path, episodes=episodes, progress=progress)


def register_envs() -> None:
    """Register every level's IDs with Gymnasium (done on import; safe to call again)."""
    from gymnasium.envs.registration import register, registry

    for level in levels():
        if level.symbolic_id and level.symbolic_id not in registry:
            register(
                id=level.symbolic_id,
                entry_point="alchemy_gym.envs.symbolic:SymbolicAlchemyEnv",
                vector_entry_point="alchemy_gym.envs.vector:SymbolicAlchemyVectorEnv",
                kwargs={"level_name": level.name},
            )
        if level.rpc_id and level.rpc_id not in registry:
            register(
                id=level.rpc_id,
                entry_point="alchemy_gym.envs.rpc:RpcAlchemyEnv",
                vector_entry_point="alchemy_gym.envs.rpc_vector:RpcAlchemyVectorEnv",
                kwargs={"level_name": level.name},
            )


register_envs()
