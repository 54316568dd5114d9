"""Gymnasium environment classes: symbolic (in-process) and 3D (dm_env_rpc)."""

from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv

__all__ = ["SymbolicAlchemyEnv"]
