"""The names and encodings of Alchemy's dm_env_rpc interface, in one place for both sides.

Our server (:mod:`alchemy_gym.server`) writes them and the clients read them: the event
decoder (:mod:`alchemy_gym.rpc.events`) and the symbolic view
(:mod:`alchemy_gym.wrappers.symbolic_view`), which rebuilds the game from the events. The
names are the Unity server's (interface spec §3, §6); ``symbolic_obs``, ``reward`` and
``discount`` are our server's additions. The colours and sizes that events give stones and
potions are those of the pictures (:data:`alchemy_gym.render.STONE_RGB`,
:data:`~alchemy_gym.render.STONE_SCALE`, :data:`~alchemy_gym.render.POTION_RGB`).
"""

from __future__ import annotations

# ------------------------------------------------------------------------- observations

#: The 39 floats of the symbolic observation (task spec §4.4; our server only).
SYMBOLIC_OBS = "symbolic_obs"
#: The episode's cumulative reward (float64 scalar).
SCORE = "Score"
#: The first-person picture (uint8 (height, width, 3)).
RGB = "RGB_INTERLEAVED"
#: The step's world events (an array of ``google.protobuf.Any``, see :mod:`alchemy_gym.rpc.events`).
EVENTS = "events"
#: The step's reward and discount: where dm_env_rpc's ``DmEnvAdaptor`` looks for them.
REWARD = "reward"
DISCOUNT = "discount"

#: The action of our server (int64 scalar: the symbolic env's action).
ACTION = "action"

# ------------------------------------------------------------------------------- events

CHEMISTRY_CREATED = "DeepMind/Alchemy/ChemistryCreated"
CAULDRON_CREATED = "DeepMind/Alchemy/CauldronCreated"
POTION_CREATED = "DeepMind/Alchemy/PotionCreated"
STONE_CREATED = "DeepMind/Alchemy/StoneCreated"
POTION_USED = "DeepMind/Alchemy/PotionUsed"
STONE_USED = "DeepMind/Alchemy/StoneUsed"
TRIAL_STARTED = "DeepMind/Trial/TrialStarted"
TRIAL_ENDED = "DeepMind/Trial/TrialEnded"

#: Every event name, in the order of the interface spec's table (§6).
EVENT_NAMES = (
    CHEMISTRY_CREATED,
    CAULDRON_CREATED,
    POTION_CREATED,
    STONE_CREATED,
    POTION_USED,
    STONE_USED,
    TRIAL_STARTED,
    TRIAL_ENDED,
)

# ---------------------------------------------------------------------------- encodings

#: A stone's ``roundness`` in the events by perceived coordinate -1, 0, +1 (task spec §2.4).
ROUNDNESS = (0.0, 0.5, 1.0)

# ------------------------------------------------------------------------------- access

#: The call metadata key that carries a client's token, as ``Bearer TOKEN`` (gRPC keys are lower case).
TOKEN_METADATA_KEY = "authorization"
#: The environment variables our server reads its token from (``alchemy-gym serve`` without
#: ``--token-file``): the token itself, or the path of a token file.
TOKEN_ENV = "ALCHEMY_GYM_TOKEN"
TOKEN_FILE_ENV = "ALCHEMY_GYM_TOKEN_FILE"
#: The Docker image label that says an image's server checks tokens; its value names the environment
#: variable the token goes in (our image: :data:`TOKEN_ENV`). The Docker launcher gives such an image
#: a fresh random token of its own; images without it (the Unity one) get none.
TOKEN_IMAGE_LABEL = "alchemy-gym.token-env"


def bearer(token: str) -> str:
    """The metadata value that presents ``token``: ``Bearer TOKEN``."""
    return f"Bearer {token}"


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    """The call metadata that presents ``token`` (``None`` without a token)."""
    return None if token is None else ((TOKEN_METADATA_KEY, bearer(token)),)
