"""What a client sends the server, checked: world settings, picture size, actions, world names.

Every setting is checked (type and shape before its value is unpacked, string lengths, ranges,
picture size) and refused with INVALID_ARGUMENT (:class:`~alchemy_gym.server.protocol.ServerError`)
saying what was wrong and what is allowed; a client's strings are echoed cut short. Nothing here
needs more than a bounded amount of work, whatever the request: an event subscription is parsed
by :mod:`alchemy_gym.server.eventfilter` and matched once against the eight event names.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from alchemy_gym.levels import find_level, parse_evaluation_name
from alchemy_gym.rpc.names import ACTION, EVENT_NAMES
from alchemy_gym.server.eventfilter import MAX_PATTERN_LENGTH, FilterError, compile_filter
from alchemy_gym.server.protocol import invalid
from alchemy_gym.server.ratelimit import short_repr, shorten

DEFAULT_WIDTH, DEFAULT_HEIGHT = 96, 72
#: Largest ``width`` / ``height`` of a picture, and largest ``width * height``.
MAX_PICTURE_SIDE = 1024
MAX_PICTURE_PIXELS = 640 * 480
#: Longest string setting (``levelName``; ``EventSubscriptionRegex`` has its own limit) and world name.
MAX_STRING_SETTING = 256
MAX_WORLD_NAME = 64
#: The uid of the one action, ``action``.
ACTION_UID = 1
#: Most settings a request may carry, and most uids a ``Step`` may list in ``requested_observations``
#: (there are six observations): a longer list is refused before it is read.
MAX_SETTINGS = 64
MAX_REQUESTED_OBSERVATIONS = 64

#: The settings each request takes.
CREATE_WORLD_SETTINGS = ("seed", "levelName", "episodeId", "EventSubscriptionRegex", "shareable")
JOIN_WORLD_SETTINGS = ("width", "height")
RESET_WORLD_SETTINGS = ("seed",)

_INT_PAYLOADS = ("int8s", "int32s", "int64s", "uint8s", "uint32s", "uint64s", "int16s", "uint16s")


@dataclass(frozen=True)
class WorldSettings:
    """The checked settings of a ``CreateWorld`` request."""

    seed: int
    #: a level name, or ``alchemy/evaluation_episodes/i``
    level_name: str
    #: the event names the client subscribed to (``None``: no subscription)
    subscribed: frozenset[str] | None
    shareable: bool


def parse_create_world(settings) -> WorldSettings:
    """The settings of ``CreateWorld``: ``seed`` and ``levelName`` required, ``episodeId`` (ignored),
    ``EventSubscriptionRegex``, ``shareable``."""
    check_names("CreateWorld", settings, CREATE_WORLD_SETTINGS)
    for required in ("seed", "levelName"):
        if required not in settings:
            raise invalid(f"CreateWorld needs the setting {required!r} (settings: seed, levelName)")
    seed = int_setting("seed", settings["seed"], 0, 2**32 - 1)
    level_name = check_level(str_setting("levelName", settings["levelName"]))
    if "episodeId" in settings:
        int_setting("episodeId", settings["episodeId"], -(2**63), 2**63 - 1)
    subscribed = None
    if "EventSubscriptionRegex" in settings:
        pattern = str_setting("EventSubscriptionRegex", settings["EventSubscriptionRegex"], MAX_PATTERN_LENGTH)
        try:
            subscribed = subscribed_events(pattern)
        except FilterError as exc:
            raise invalid(f"EventSubscriptionRegex {short_repr(pattern, 60)} is not allowed: {exc}") from None
    shareable = bool_setting("shareable", settings["shareable"]) if "shareable" in settings else False
    return WorldSettings(seed, level_name, subscribed, shareable)


def parse_join_world(settings) -> tuple[int, int]:
    """``(width, height)`` of the pictures, from ``JoinWorld``'s settings (default 96×72)."""
    check_names("JoinWorld", settings, JOIN_WORLD_SETTINGS)
    width = int_setting("width", settings["width"], 1, MAX_PICTURE_SIDE) if "width" in settings else DEFAULT_WIDTH
    height = int_setting("height", settings["height"], 1, MAX_PICTURE_SIDE) if "height" in settings else DEFAULT_HEIGHT
    if width * height > MAX_PICTURE_PIXELS:
        raise invalid(
            f"the picture width x height = {width} x {height} = {width * height} pixels is too large: "
            f"at most {MAX_PICTURE_PIXELS} pixels (e.g. 640 x 480), each side at most {MAX_PICTURE_SIDE}"
        )
    return width, height


def parse_reset_world(settings) -> int | None:
    """The new seed of ``ResetWorld`` (``None``: keep the world's)."""
    check_names("ResetWorld", settings, RESET_WORLD_SETTINGS)
    return int_setting("seed", settings["seed"], 0, 2**32 - 1) if "seed" in settings else None


def check_reset(settings) -> None:
    """``Reset`` takes no settings."""
    if settings:
        raise invalid(f"Reset takes no settings, got {names_text(sorted(settings, key=len))}")


@functools.lru_cache(maxsize=128)
def subscribed_events(pattern: str) -> frozenset[str]:
    """The names in :data:`~alchemy_gym.rpc.names.EVENT_NAMES` that ``pattern`` matches (``FilterError`` if it
    is not allowed).

    The pattern is parsed by the linear-time matcher of :mod:`alchemy_gym.server.eventfilter`; the
    result is cached per pattern (clients send the same few).
    """
    return compile_filter(pattern).select(EVENT_NAMES)


def check_level(level_name: str) -> str:
    """The level name to build a world of (``alchemy/evaluation_episodes`` for the evaluation set's names
    without an episode); INVALID_ARGUMENT naming the levels if there is no such level."""
    try:
        level = find_level(level_name)
    except ValueError as exc:  # the message names the level: cut it short
        raise invalid(f"levelName: {str(exc).replace(repr(level_name), short_repr(level_name, 60))}") from None
    if level.is_evaluation and parse_evaluation_name(level_name) is None:
        return level.name
    return level_name


def check_world_name(name: str) -> None:
    """INVALID_ARGUMENT for a world name longer than :data:`MAX_WORLD_NAME`."""
    if len(name) > MAX_WORLD_NAME:
        raise invalid(f"world_name has {len(name)} characters: world names have at most {MAX_WORLD_NAME}")


def check_requested(requested, known) -> None:
    """INVALID_ARGUMENT unless every uid of a ``Step``'s ``requested_observations`` is in ``known`` (a mapping
    uid → spec), and there are at most :data:`MAX_REQUESTED_OBSERVATIONS` of them."""
    if len(requested) > MAX_REQUESTED_OBSERVATIONS:
        raise invalid(
            f"requested_observations lists {len(requested)} uids: at most {MAX_REQUESTED_OBSERVATIONS} are allowed "
            f"(the observations are uids {', '.join(str(u) for u in sorted(known))})"
        )
    for uid in requested:
        if uid not in known:
            names = ", ".join(f"{u} ({s.name})" for u, s in sorted(known.items()))
            raise invalid(f"requested observation uid {uid} is unknown: known uids are {names}")


def parse_action(actions, num_actions: int) -> int:
    """The action of a ``Step``'s ``actions`` map: 0 (a no-op) when absent, else its one int scalar, checked."""
    if not actions:
        return 0  # no-op
    if len(actions) == 1:  # the usual request: one int64 scalar (anything else is checked below)
        tensor = actions.get(ACTION_UID)
        if tensor is not None and not tensor.shape and tensor.WhichOneof("payload") == "int64s":
            values = tensor.int64s.array
            if len(values) == 1 and 0 <= values[0] < num_actions:
                return values[0]
    action = 0
    for uid, tensor in actions.items():
        if uid != ACTION_UID:
            raise invalid(f"unknown action uid {uid}: the only action is uid {ACTION_UID} ({ACTION!r})")
        which = tensor.WhichOneof("payload")
        if which not in _INT_PAYLOADS:
            raise invalid(f"action {ACTION!r} must be an integer (int64) scalar, got a {which} tensor")
        if len(tensor.shape) != 0:
            raise invalid(f"action {ACTION!r} must be a scalar (shape []), got shape {shape_text(tensor.shape)}")
        values = getattr(tensor, which).array
        if which in ("int8s", "uint8s"):
            values = np.frombuffer(values, dtype=np.int8 if which == "int8s" else np.uint8)
        if len(values) != 1:
            raise invalid(f"action {ACTION!r} must hold exactly one value, got {len(values)}")
        action = int(values[0])
        if not 0 <= action < num_actions:
            raise invalid(f"action {action} out of range: allowed 0..{num_actions - 1}")
    return action


# ------------------------------------------------------------------------ one setting


def int_setting(name: str, tensor, low: int, high: int) -> int:
    """An integer scalar setting in ``low..high``."""
    which = _scalar_payload(name, tensor, _INT_PAYLOADS, f"an integer scalar in {low}..{high}")
    value = _unpack_setting(name, tensor)
    if np.ndim(value) != 0:
        raise invalid(f"setting {name!r} must be an integer scalar in {low}..{high}, got {which} {short_repr(value)}")
    value = int(value)
    if not low <= value <= high:
        raise invalid(f"setting {name!r}={value} out of range: allowed {low}..{high}")
    return value


def str_setting(name: str, tensor, max_length: int = MAX_STRING_SETTING) -> str:
    """A string scalar setting of at most ``max_length`` characters."""
    _scalar_payload(name, tensor, ("strings",), "a string scalar")
    value = tensor.strings.array[0]
    if len(value) > max_length:
        raise invalid(
            f"setting {name!r} has {len(value)} characters: at most {max_length} are allowed "
            f"(got {short_repr(value, 40)})"
        )
    return str(value)


def bool_setting(name: str, tensor) -> bool:
    """A bool scalar setting."""
    _scalar_payload(name, tensor, ("bools",), "a bool scalar")
    return bool(tensor.bools.array[0])


def check_names(kind: str, settings, allowed: tuple[str, ...]) -> None:
    """INVALID_ARGUMENT naming the unknown settings (the shortest first) and the allowed ones, or saying that
    there are more than :data:`MAX_SETTINGS`."""
    if len(settings) > MAX_SETTINGS:
        raise invalid(f"{kind} has {len(settings)} settings: at most {MAX_SETTINGS} are allowed ({list(allowed)})")
    unknown = [n for n in settings if n not in allowed]
    if unknown:
        unknown.sort(key=lambda n: (len(n), n))
        raise invalid(f"unknown {kind} setting(s) {names_text(unknown)}: allowed {list(allowed)}")


def names_text(names, limit: int = 3) -> str:
    """Some (user-given) names, each cut short, and how many more there are."""
    names = list(names)
    text = ", ".join(short_repr(n, 40) for n in names[:limit])
    return f"[{text}{f', and {len(names) - limit} more' if len(names) > limit else ''}]"


def shape_text(shape) -> str:
    """A (client's) tensor shape, its first dimensions only."""
    dims = [str(d) for d in shape[:4]] + (["…"] if len(shape) > 4 else [])
    return f"[{', '.join(dims)}]"


def _unpack_setting(name: str, tensor):
    from dm_env_rpc.v1 import tensor_utils

    try:
        return tensor_utils.unpack_tensor(tensor)
    except Exception as exc:  # malformed tensor (shape/payload mismatch …)
        raise invalid(f"setting {name!r} is not a valid tensor: {shorten(exc, 120)}") from None


def _scalar_payload(name: str, tensor, payloads: tuple[str, ...], what: str):
    """The payload kind of a scalar setting, checked before anything is unpacked.

    A tensor's shape is checked first: ``unpack_tensor`` broadcasts a single value to its shape,
    so a huge shape would allocate a huge array.
    """
    which = tensor.WhichOneof("payload")
    if which not in payloads or len(tensor.shape) != 0:
        raise invalid(f"setting {name!r} must be {what}, got a {which} tensor of shape {shape_text(tensor.shape)}")
    values = getattr(tensor, which).array  # bytes for int8s / uint8s: one value a byte
    if len(values) != 1:
        raise invalid(f"setting {name!r} must be {what}, got {len(values)} values")
    return which
