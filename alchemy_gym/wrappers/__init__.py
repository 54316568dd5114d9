"""Wrappers that Gymnasium does not already provide.

* :class:`FlatRpcActions` — the 3D env's ``Dict`` of Unity controls as one flat ``Box`` (SB3, CleanRL).
* :class:`DiscreteRpcActions` — a small named ``Discrete`` action set over the Unity controls.

For the symbolic env, Gymnasium's own wrappers cover the usual needs (``FlattenObservation``
turns the ``Dict`` observation with chemistry observations into one ``Box``;
``RecordEpisodeStatistics`` and vector envs work as they are).
"""

from alchemy_gym.wrappers.rpc_actions import DiscreteRpcActions, FlatRpcActions

__all__ = ["DiscreteRpcActions", "FlatRpcActions"]
