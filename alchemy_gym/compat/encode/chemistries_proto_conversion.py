"""dm_alchemy's ``encode.chemistries_proto_conversion``: load chemistries and their episode items.

:func:`load_chemistries_and_items` with no file gives the 1000 evaluation episodes packaged with
alchemy-gym (dm_alchemy's ``chemistries/perceptual_mapping_randomized_with_random_bottleneck/chemistries``,
which is also what that path means when no such file exists); play one with
:func:`~alchemy_gym.compat.symbolic_alchemy.get_symbolic_alchemy_fixed`.
"""

from __future__ import annotations

import os
from pathlib import Path

from alchemy_gym.compat.types.utils import Chemistry, EpisodeItems
from alchemy_gym.data import evaluation_episodes, load_chemistries

__all__ = ["EVALUATION_CHEMISTRIES", "load_chemistries_and_items"]

#: Where dm_alchemy keeps the evaluation chemistries (relative to its package).
EVALUATION_CHEMISTRIES = "chemistries/perceptual_mapping_randomized_with_random_bottleneck/chemistries"


def load_chemistries_and_items(filename: str | os.PathLike | None = None) -> list[tuple[Chemistry, EpisodeItems]]:
    """``[(chemistry, episode items), ...]`` of a serialised ``ChemistriesAndItems`` file (raw or xz).

    ``None`` (or dm_alchemy's relative path :data:`EVALUATION_CHEMISTRIES` when no file is there) gives
    the packaged evaluation episodes: entry ``i`` is the 3D level ``alchemy/evaluation_episodes/i``.
    """
    if filename is None or (
        isinstance(filename, (str, os.PathLike))
        and Path(filename).as_posix().endswith(EVALUATION_CHEMISTRIES)
        and not Path(filename).exists()
    ):
        episodes = evaluation_episodes()
    elif isinstance(filename, (str, os.PathLike)):
        episodes = load_chemistries(filename)
    else:
        raise TypeError(f"filename must be a path (str or os.PathLike) or None, got {type(filename).__name__}")
    return [(e.chemistry, EpisodeItems.from_trials(e.trials)) for e in episodes]
