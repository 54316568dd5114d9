"""Wrappers that Gymnasium does not already provide.

* :class:`FlatRpcActions` — the 3D env's ``Dict`` of Unity controls as one flat ``Box`` (SB3, CleanRL).
* :class:`DiscreteRpcActions` — a small named ``Discrete`` action set over the Unity controls.
* :class:`SymbolicView` / :class:`SymbolicViewVector` — the 3D env (single or vector) with the symbolic
  observation and chemistry observations of a symbolic game kept in step from its world events.
* :class:`AlchemySB3VecEnv` — Stable-Baselines3's ``VecEnv`` over the native symbolic vector env
  (imported on first use: it needs the ``sb3`` extra).

For the symbolic env, Gymnasium's own wrappers cover the usual needs (``FlattenObservation``
turns the ``Dict`` observation with chemistry observations into one ``Box``;
``RecordEpisodeStatistics`` and vector envs work as they are).
"""

from alchemy_gym.wrappers.rpc_actions import DiscreteRpcActions, FlatRpcActions
from alchemy_gym.wrappers.symbolic_view import SymbolicView, SymbolicViewError, SymbolicViewVector

__all__ = [
    "AlchemySB3VecEnv",
    "DiscreteRpcActions",
    "FlatRpcActions",
    "SymbolicView",
    "SymbolicViewError",
    "SymbolicViewVector",
]


def __getattr__(name: str):
    if name == "AlchemySB3VecEnv":
        from alchemy_gym.wrappers.sb3 import AlchemySB3VecEnv

        return AlchemySB3VecEnv
    raise AttributeError(f"module 'alchemy_gym.wrappers' has no attribute {name!r}")
