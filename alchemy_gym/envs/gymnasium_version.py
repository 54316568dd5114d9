"""What the installed Gymnasium offers: the package runs on gymnasium 0.29.1 and 1.x.

The single envs (symbolic and 3D), registration, Gymnasium's wrappers, the agents and the
evaluation work on both. The native vector envs are Gymnasium 1.x ``VectorEnv`` s (its step API,
info layout and autoreset modes): on an older Gymnasium they raise :class:`GymnasiumVersionError`
naming the version they need, and Gymnasium's own ``SyncVectorEnv`` / ``AsyncVectorEnv`` over
the single envs remain available.
"""

from __future__ import annotations

import enum
import re

import gymnasium

__all__ = ["VECTOR_API", "VERSION", "AutoresetMode", "GymnasiumVersionError", "require_vector_api"]


def _parse(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


#: ``(major, minor)`` of the installed Gymnasium.
VERSION: tuple[int, int] = _parse(gymnasium.__version__)
#: Whether Gymnasium's 1.x vector API (``VectorEnv.step`` returning the batch, ``make_vec``'s
#: ``vector_entry_point`` mode) is there.
VECTOR_API: bool = VERSION >= (1, 0)

try:  # gymnasium >= 1.1
    from gymnasium.vector import AutoresetMode
except ImportError:  # gymnasium 0.29 / 1.0: a stand-in with Gymnasium's names and values, for the settings

    class AutoresetMode(enum.Enum):  # type: ignore[no-redef]
        """Gymnasium 1.1's ``AutoresetMode`` (``gymnasium.vector.AutoresetMode`` where it exists)."""

        NEXT_STEP = "NextStep"
        SAME_STEP = "SameStep"
        DISABLED = "Disabled"


class GymnasiumVersionError(ImportError):
    """A feature needs a newer Gymnasium than the one installed (the message names the version)."""


def require_vector_api(what: str) -> None:
    """Raise :class:`GymnasiumVersionError` unless Gymnasium's 1.x vector API is installed."""
    if not VECTOR_API:
        raise GymnasiumVersionError(
            f"{what} needs gymnasium>=1.0 (the vector env API of Gymnasium 1.x); the installed gymnasium is "
            f"{gymnasium.__version__}. Upgrade with pip install 'gymnasium>=1.0,<2', or vectorise the single env "
            "with Gymnasium's own gymnasium.vector.SyncVectorEnv / AsyncVectorEnv."
        )
