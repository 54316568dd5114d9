"""Wrappers that Gymnasium does not already provide.

For the symbolic env, Gymnasium's own wrappers cover the usual needs
(``FlattenObservation`` turns the ``Dict`` observation with chemistry
observations into one ``Box``; ``RecordEpisodeStatistics`` and vector envs
work as they are).
"""

__all__: list[str] = []
