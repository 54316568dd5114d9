"""Symbolic Alchemy served over dm_env_rpc: the same game as the in-process env, behind the 3D interface.

Run it with ``alchemy-gym serve --port 10000`` or ``python -m alchemy_gym.server.service``.
It binds to 127.0.0.1 unless ``--host`` says otherwise (the Docker image passes
``--host 0.0.0.0`` inside its container).

Protocol (dm_env_rpc v1, interface spec §2):

* ``CreateWorld``: settings ``seed`` (int 0..2**32-1, required), ``levelName`` (string, required: a 3D
  or symbolic level name, or ``alchemy/evaluation_episodes/i``), ``episodeId`` (int, accepted and
  ignored), ``EventSubscriptionRegex`` (string: the events whose name it matches as ``re.search``
  would are sent; none without it; see *Event subscriptions*) and ``shareable`` (bool, default
  false: see *Worlds belong to their creator*). The answer names the world ``world_`` + 16 random
  hex digits.
* ``JoinWorld``: settings ``width``, ``height`` (ints 1..1024, at most 640×480 pixels in all;
  default 96×72) → the specs below.
* ``Step``: the first step after joining, after ``Reset`` or after an episode ended starts a new
  episode and ignores its actions; later steps play ``action`` (a no-op when absent).
* ``Reset``: the next step starts a new episode (continuing the world's random stream).
* ``ResetWorld``: optional ``seed``; restarts the world's random stream (with that seed).
* ``LeaveWorld`` / ``DestroyWorld``: as dm_env_rpc; a world lives at most as long as the
  connection that created it (unless another connection has joined a shareable world).

Specs: action ``action`` (int64 scalar, 0..39: the action of
:class:`~alchemy_gym.envs.symbolic.SymbolicAlchemyEnv`); observations
``symbolic_obs`` (float32 (39,)), ``Score`` (float64, the episode's cumulative
reward), ``RGB_INTERLEAVED`` (uint8 (height, width, 3), see
:mod:`alchemy_gym.render`), ``events`` (``google.protobuf.Any`` array of
``deepmind.dmworlds.WorldEvent``, see :mod:`alchemy_gym.rpc.events`), ``reward``
(float64, the step's reward; 0.0 on an episode's first step) and ``discount``
(float64 in [0, 1]: 0.0 on the step that ends an episode, else 1.0). ``reward`` and
``discount`` are what dm_env_rpc's ``DmEnvAdaptor`` takes its rewards and discounts
from; a client may instead take the change of ``Score`` (what the Unity server's
documented observations allow). ``TERMINATED`` ends an episode.

The first episode of a world is ``SymbolicAlchemyEnv.reset(seed=seed)``, later
ones ``reset()``: a world plays exactly the episodes of the in-process env
seeded with the world seed.

Errors come back as dm_env_rpc error statuses (the stream stays open), with a
short message that says what was wrong and what is allowed (a client's strings
are echoed cut to 80 characters).

## Serving many clients, some of them hostile

Every request is handled to its end on the server's one event loop, so nothing a client sends
may cost more than a bounded amount of work, and no client may touch another's worlds:

* *Event subscriptions.* A client's pattern never reaches Python's backtracking ``re``: it is
  parsed by :mod:`alchemy_gym.server.eventfilter`, a linear-time subset (literals, ``.``, classes,
  groups, ``|``, ``* + ?``, ``^ $``; at most 256 characters, groups at most 16 deep; everything
  else, e.g. ``{m,n}`` or back-references, is INVALID_ARGUMENT naming what is allowed) run once at
  ``CreateWorld`` over the server's eight event names (:data:`EVENT_NAMES`). A step then only
  looks names up in that set. ``DeepMind/.*`` and ``.*``, what the 3D clients send, work as before.
* *Settings.* Every setting is checked (type and shape before its value is unpacked, string
  lengths, ranges, picture size) and refused with INVALID_ARGUMENT.
* *Worlds belong to their creator.* Other connections get PERMISSION_DENIED for ``JoinWorld``,
  ``ResetWorld`` and ``DestroyWorld`` unless the world was created with ``shareable=True``;
  world names are random, and a NOT_FOUND error lists only the caller's own worlds.
* *Limits.* At most :data:`MAX_WORLDS` worlds in all and ``max_worlds_per_connection`` (8) per
  connection (RESOURCE_EXHAUSTED); requests of at most ``max_request_bytes`` (1 MiB; a larger one
  ends its stream with RESOURCE_EXHAUSTED); at most ``max_connections`` streams at once: one
  more is refused at once with RESOURCE_EXHAUSTED ``alchemy-gym server is full: …``, which the
  clients (:mod:`alchemy_gym.rpc.launchers`, :class:`~alchemy_gym.envs.rpc.RpcAlchemyEnv`) turn
  into an immediate error saying so, with the limit.
* *Idle streams.* With ``idle_timeout`` (``alchemy-gym serve --idle-timeout SECONDS``; off by
  default), a stream that sends no request for that long is ended with DEADLINE_EXCEEDED
  ``alchemy-gym server closed an idle connection: …`` and its worlds are destroyed, so that
  clients which connect and then go quiet cannot hold every connection for ever. Leave it off
  when clients may pause between steps for longer (a notebook, a debugger).
* *Malformed messages* (bytes that do not parse as an ``EnvironmentRequest``) get
  INVALID_ARGUMENT on a stream that stays open. They, refused streams and internal errors are
  logged one short line each, at most 5 lines a minute per kind and then a count of the
  suppressed ones (:class:`~alchemy_gym.server.ratelimit.RateLimitedLog`), so the log keeps its
  start-up line and real errors findable.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import secrets
import signal
import sys
import threading

import numpy as np

from alchemy_gym.core.batch import observation_bounds
from alchemy_gym.core.episodes import EpisodeSource
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.core.items import (
    NUM_LATENT_STONES,
    NUM_POTION_TYPES,
    POTION_COLOURS,
    POTION_DIM_DIR,
    ROTATION_ANGLES,
    STONE_COORDS,
)
from alchemy_gym.levels import EVALUATION_PREFIX, find_level, parse_evaluation_name
from alchemy_gym.render import POTION_RGB, STONE_RGB, STONE_SCALE, TrialPainter
from alchemy_gym.server.eventfilter import MAX_PATTERN_LENGTH, FilterError, compile_filter
from alchemy_gym.server.ratelimit import RateLimitedLog, short_repr, shorten

log = logging.getLogger("alchemy_gym.server.service")

DEFAULT_PORT = 10000
DEFAULT_WIDTH, DEFAULT_HEIGHT = 96, 72
#: Largest ``width`` / ``height`` of a picture, and largest ``width * height``.
MAX_PICTURE_SIDE = 1024
MAX_PICTURE_PIXELS = 640 * 480
MAX_WORLDS = 64
#: Worlds one connection may hold at once (a client needs one; the compliance tests two).
DEFAULT_MAX_WORLDS_PER_CONNECTION = 8
#: Concurrent streams a server accepts (a stream costs no thread: a vector env may open one per sub-env).
DEFAULT_MAX_CONNECTIONS = 64
#: Largest request message (bytes); gRPC ends the stream of a larger one with RESOURCE_EXHAUSTED.
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
#: Longest string setting (``levelName``; ``EventSubscriptionRegex`` has its own limit) and world name.
MAX_STRING_SETTING = 256
MAX_WORLD_NAME = 64
#: Streams gRPC itself still accepts beyond ``max_connections`` (to be refused with our message).
_REFUSAL_HEADROOM = 16
#: Seconds a refused stream waits for the client's first request before its status is sent.
_REFUSAL_READ_WAIT = 2.0
#: The start of the refusal message of a full server (the clients look for it).
SERVER_FULL = "alchemy-gym server is full"
#: The start of the status that ends a stream idle for longer than the server's ``idle_timeout``.
IDLE_CLOSED = "alchemy-gym server closed an idle connection"


def check_idle_timeout(idle_timeout: float | None) -> float | None:
    """``idle_timeout`` checked: ``None`` (never) or a positive, finite number of seconds; else ``ValueError``."""
    if idle_timeout is None:
        return None
    number = isinstance(idle_timeout, (int, float)) and not isinstance(idle_timeout, bool)
    if not number or not 0 < idle_timeout < math.inf:
        raise ValueError(
            f"idle_timeout must be None (never) or a positive, finite number of seconds, got {idle_timeout!r}"
        )
    return float(idle_timeout)


#: The names of the events this server sends (what ``EventSubscriptionRegex`` is matched against).
EVENT_NAMES = (
    "DeepMind/Alchemy/ChemistryCreated",
    "DeepMind/Alchemy/CauldronCreated",
    "DeepMind/Alchemy/PotionCreated",
    "DeepMind/Alchemy/StoneCreated",
    "DeepMind/Alchemy/PotionUsed",
    "DeepMind/Alchemy/StoneUsed",
    "DeepMind/Trial/TrialStarted",
    "DeepMind/Trial/TrialEnded",
)

ACTION_UID = 1
OBS_SYMBOLIC, OBS_SCORE, OBS_RGB, OBS_EVENTS, OBS_REWARD, OBS_DISCOUNT = 1, 2, 3, 4, 5, 6
_OBS_NAMES = {OBS_SYMBOLIC: "symbolic_obs", OBS_SCORE: "Score", OBS_RGB: "RGB_INTERLEAVED", OBS_EVENTS: "events"}

#: ``EnvironmentStateType`` values (dm_env_rpc.proto; checked in the tests)
_RUNNING, _TERMINATED = 1, 2

_INT_PAYLOADS = ("int8s", "int32s", "int64s", "uint8s", "uint32s", "uint64s", "int16s", "uint16s")
_ROUNDNESS = (0.0, 0.5, 1.0)


@functools.cache
def _pb():
    from dm_env_rpc.v1 import dm_env_rpc_pb2

    return dm_env_rpc_pb2


class ServerError(Exception):
    """An error sent back to the client as a ``google.rpc.Status`` (``code`` from ``google.rpc.code_pb2``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@functools.cache
def _codes():
    from google.rpc import code_pb2

    return code_pb2


@functools.cache
def _make_event():
    from alchemy_gym.rpc.events import make_event

    return make_event


def _invalid(message: str) -> ServerError:
    return ServerError(_codes().INVALID_ARGUMENT, message)


def _precondition(message: str) -> ServerError:
    return ServerError(_codes().FAILED_PRECONDITION, message)


# ---------------------------------------------------------------------------- settings


def _unpack_setting(name: str, tensor):
    from dm_env_rpc.v1 import tensor_utils

    try:
        return tensor_utils.unpack_tensor(tensor)
    except Exception as exc:  # malformed tensor (shape/payload mismatch …)
        raise _invalid(f"setting {name!r} is not a valid tensor: {shorten(exc, 120)}") from None


def _shape_text(shape) -> str:
    """A (client's) tensor shape, its first dimensions only."""
    dims = [str(d) for d in shape[:4]] + (["…"] if len(shape) > 4 else [])
    return f"[{', '.join(dims)}]"


def _scalar_payload(name: str, tensor, payloads: tuple[str, ...], what: str):
    """The payload kind of a scalar setting, checked before anything is unpacked.

    A tensor's shape is checked first: ``unpack_tensor`` broadcasts a single value to its shape,
    so a huge shape would allocate a huge array.
    """
    which = tensor.WhichOneof("payload")
    if which not in payloads or len(tensor.shape) != 0:
        raise _invalid(f"setting {name!r} must be {what}, got a {which} tensor of shape {_shape_text(tensor.shape)}")
    values = getattr(tensor, which).array  # bytes for int8s / uint8s: one value a byte
    if len(values) != 1:
        raise _invalid(f"setting {name!r} must be {what}, got {len(values)} values")
    return which


def _int_setting(name: str, tensor, low: int, high: int) -> int:
    which = _scalar_payload(name, tensor, _INT_PAYLOADS, f"an integer scalar in {low}..{high}")
    value = _unpack_setting(name, tensor)
    if np.ndim(value) != 0:
        raise _invalid(f"setting {name!r} must be an integer scalar in {low}..{high}, got {which} {short_repr(value)}")
    value = int(value)
    if not low <= value <= high:
        raise _invalid(f"setting {name!r}={value} out of range: allowed {low}..{high}")
    return value


def _str_setting(name: str, tensor, max_length: int = MAX_STRING_SETTING) -> str:
    _scalar_payload(name, tensor, ("strings",), "a string scalar")
    value = tensor.strings.array[0]
    if len(value) > max_length:
        raise _invalid(
            f"setting {name!r} has {len(value)} characters: at most {max_length} are allowed "
            f"(got {short_repr(value, 40)})"
        )
    return str(value)


def _bool_setting(name: str, tensor) -> bool:
    _scalar_payload(name, tensor, ("bools",), "a bool scalar")
    return bool(tensor.bools.array[0])


def _names_text(names, limit: int = 3) -> str:
    """Some (user-given) names, each cut short, and how many more there are."""
    names = list(names)
    text = ", ".join(short_repr(n, 40) for n in names[:limit])
    return f"[{text}{f', and {len(names) - limit} more' if len(names) > limit else ''}]"


def _check_names(kind: str, settings, allowed: tuple[str, ...]) -> None:
    unknown = [n for n in settings if n not in allowed]
    if unknown:
        unknown.sort(key=lambda n: (len(n), n))
        raise _invalid(f"unknown {kind} setting(s) {_names_text(unknown)}: allowed {list(allowed)}")


def _check_world_name(name: str) -> None:
    if len(name) > MAX_WORLD_NAME:
        raise _invalid(f"world_name has {len(name)} characters: world names have at most {MAX_WORLD_NAME}")


@functools.lru_cache(maxsize=128)
def subscribed_events(pattern: str) -> frozenset[str]:
    """The names in :data:`EVENT_NAMES` that ``pattern`` matches (``FilterError`` if it is not allowed).

    The pattern is parsed by the linear-time matcher of :mod:`alchemy_gym.server.eventfilter`; the
    result is cached per pattern (clients send the same few).
    """
    return compile_filter(pattern).select(EVENT_NAMES)


# ------------------------------------------------------------------------------ events


def _stone_properties(game, latent: int) -> dict:
    coords, indicator = game.perceived_stone(latent)
    colour, size, roundness = coords
    r, g, b = STONE_RGB[colour + 1]
    return {
        "size": STONE_SCALE[size + 1],
        "roundness": _ROUNDNESS[roundness + 1],
        "reward": 15.0 if indicator == 3 else float(indicator),
        "color": {"r": r, "g": g, "b": b, "a": 1.0},
        "latent": {"index": int(latent), "coordinates": [int(c) for c in STONE_COORDS[latent]]},
    }


def _potion_properties(game, latent: int) -> dict:
    dim, direction = POTION_DIM_DIR[latent]
    perceived = game.perceived_potion(latent)
    r, g, b = POTION_RGB[perceived]
    colour = {"color": {"r": r, "g": g, "b": b, "a": 1.0}, "name": POTION_COLOURS[perceived]}
    trans = game._trans  # the chemistry's transition table (core.graphs.transition_table)
    reactions = [
        {"from_stone_index": s, "to_stone_index": int(trans[s * NUM_POTION_TYPES + latent])}
        for s in range(NUM_LATENT_STONES)
        if trans[s * NUM_POTION_TYPES + latent] != s
    ]
    return {
        "label": {"dimension_index": dim, "direction": "POSITIVE" if direction > 0 else "NEGATIVE"},
        "reward": 0.0,
        "color": colour,
        "glow_color": colour,
        "reactions": reactions,
    }


def _stone_id(trial: int, slot: int) -> int:
    return 1000 + 100 * trial + slot


def _potion_id(trial: int, slot: int) -> int:
    return 2000 + 100 * trial + slot


_CAULDRON_ID = 1


class _EventRecorder:
    """Listens to an :class:`~alchemy_gym.core.game.AlchemyGame` and records ``WorldEvent`` Anys."""

    def __init__(self, game, subscribed: frozenset[str], reward_weights, seed: int) -> None:
        self.game = game
        self.subscribed = subscribed  # the names of EVENT_NAMES the client's pattern matches
        self.reward_weights = reward_weights
        self.seed = seed
        self.pending: list = []  # (name, frame, detail builder): protos are built only when requested
        self._properties: dict = {}  # ("stone" | "potion", latent) → message, for the current chemistry
        self.frame = 0
        game.add_listener(self)

    def _emit(self, name: str, detail) -> None:
        """Record an event if subscribed; ``detail`` is a dict or a zero-argument callable returning one."""
        if name in self.subscribed:
            self.pending.append((name, self.frame, detail))

    # Details are built lazily (at most once a step, and only when the client asked for events):
    # everything they read is either captured now or constant within the step (the chemistry).

    def _stone(self, latent: int):
        return self._cached_properties("StoneProperties", _stone_properties, latent)

    def _potion(self, latent: int):
        return self._cached_properties("PotionProperties", _potion_properties, latent)

    def _cached_properties(self, message_name: str, describe, latent: int):
        """The ``StoneProperties``/``PotionProperties`` message of a latent item, built once per chemistry."""
        key = (message_name, latent)
        message = self._properties.get(key)
        if message is None:
            from alchemy_gym.rpc.events import fill_message, messages

            message = getattr(messages(), message_name)()
            fill_message(message, describe(self.game, latent))
            self._properties[key] = message
        return message

    def _trial_items(self, trial: int) -> None:
        game = self.game
        self._emit("DeepMind/Alchemy/CauldronCreated", {"cauldron_instance_id": _CAULDRON_ID})
        for slot, latent in enumerate(game.potions):
            if latent >= 0:
                self._emit(
                    "DeepMind/Alchemy/PotionCreated",
                    lambda slot=slot, latent=latent: {
                        "potion_instance_id": _potion_id(trial, slot),
                        "potion_properties": self._potion(latent),
                    },
                )
        for slot, latent in enumerate(game.stones):
            if latent >= 0:
                self._emit(
                    "DeepMind/Alchemy/StoneCreated",
                    lambda slot=slot, latent=latent: {
                        "stone_instance_id": _stone_id(trial, slot),
                        "stone_properties": self._stone(latent),
                    },
                )
        self._emit("DeepMind/Trial/TrialStarted", {"trial_id": trial})

    def _chemistry_created(self, chemistry) -> dict:
        coefficients, offset, bonus = self.reward_weights
        angles = ROTATION_ANGLES[chemistry.rotation]
        return {
            "chemistry": {
                "stones": [self._stone(s) for s in range(NUM_LATENT_STONES)],
                "potions": [self._potion(p) for p in range(NUM_POTION_TYPES)],
            },
            # Unity's angles are the negated Python ones (interface spec §6)
            "rotation_mapping": {"rotation_angles": {"x": -angles[0], "y": -angles[1], "z": -angles[2]}},
            "reward_mapping": {"coefficients": list(coefficients), "offset": offset, "bonus": bonus},
        }

    def __call__(self, kind: str, *args) -> None:
        game = self.game
        if kind == "episode_start":
            (chemistry,) = args
            self.frame = 0
            self._properties = {}
            self._emit("DeepMind/Alchemy/ChemistryCreated", lambda: self._chemistry_created(chemistry))
        elif kind == "trial_start":
            (trial,) = args
            self._trial_items(trial)
        elif kind == "trial_end":
            (trial,) = args
            self._emit("DeepMind/Trial/TrialEnded", {"trial_id": trial})
        elif kind == "potion":
            slot, potion_slot, old, latent_potion, new = args
            trial = game.trial_number
            left = sum(1 for p in game.potions if p >= 0)
            self._emit(
                "DeepMind/Alchemy/PotionUsed",
                lambda: {
                    "potion_instance_id": _potion_id(trial, potion_slot),
                    "stone_instance_id": _stone_id(trial, slot),
                    "stone_properties_old": self._stone(old),
                    "stone_properties_new": self._stone(new),
                    "potion_properties": self._potion(latent_potion),
                    "reward": 0.0,
                    "reactions_left": left,
                },
            )
        elif kind == "cauldron":
            slot, latent, reward = args
            trial = game.trial_number
            self._emit(
                "DeepMind/Alchemy/StoneUsed",
                lambda: {
                    "stone_instance_id": _stone_id(trial, slot),
                    "stone_properties": self._stone(latent),
                    "reward": float(reward),
                },
            )

    def take(self, build: bool = True) -> list:
        """The events since the last call, as ``Any`` protos (``build=False``: just forget them)."""
        pending, self.pending = self.pending, []
        if not build:
            return []
        make_event = _make_event()
        return [
            make_event(name, detail() if callable(detail) else detail, frame=frame, seed=self.seed)
            for name, frame, detail in pending
        ]


# ------------------------------------------------------------------------------ worlds


class _World:
    """One created world: a game of the level (the core's :class:`AlchemyGame`) plus its seed, subscriptions
    and owner."""

    def __init__(
        self,
        name: str,
        level_name: str,
        seed: int,
        subscribed: frozenset[str] | None,
        owner: object,
        shareable: bool = False,
    ) -> None:
        self.name = name
        self.level_name = level_name
        self.seed = seed
        self.owner = owner
        self.shareable = shareable
        self.joined_by: object | None = None
        self.episode = parse_evaluation_name(level_name)
        level = find_level(level_name)
        if level.name == EVALUATION_PREFIX:
            from alchemy_gym.data import evaluation_source

            source = evaluation_source()
        else:
            source = EpisodeSource.sampled(level.name)
        self.game = AlchemyGame(source=source)
        weights = self.game.config.reward_weights
        self.recorder = _EventRecorder(self.game, subscribed, weights, seed) if subscribed else None
        self.episodes_started = 0
        self.num_actions = self.game.num_actions

    def start_episode(self) -> None:
        """The next episode: the first as the symbolic env's ``reset(seed=seed)``, later ones as ``reset()``."""
        self.game.new_episode(self.episode, seed=self.seed if self.episodes_started == 0 else None)
        self.episodes_started += 1

    @property
    def episode_return(self) -> float:
        return sum(self.game.trial_rewards)


def _check_level(level_name: str) -> str:
    try:
        level = find_level(level_name)
    except ValueError as exc:  # the message names the level: cut it short
        raise _invalid(f"levelName: {str(exc).replace(repr(level_name), short_repr(level_name, 60))}") from None
    if level.name == EVALUATION_PREFIX and parse_evaluation_name(level_name) is None:
        return level.name
    return level_name


class _Session:
    """The state of one ``Process`` stream (one client connection)."""

    RUNNING, NEW_EPISODE = "running", "new_episode"

    def __init__(self, servicer: AlchemyServicer, peer: str = "?") -> None:
        self.servicer = servicer
        self.peer = peer
        self.world: _World | None = None
        self.state = self.NEW_EPISODE
        self.specs = None
        self.painter: TrialPainter | None = None
        self._rgb_cache: tuple[int, object] | None = None
        self._obs_specs = {}

    # -- dispatch
    def handle_bytes(self, data: bytes):
        """The response to one serialized request (what the stream carries)."""
        pb = _pb()
        try:
            request = pb.EnvironmentRequest.FromString(data)
        except Exception:  # not an EnvironmentRequest: answer, keep the stream
            self.servicer.malformed_log.warning(
                "malformed message (%d bytes) from %s: not a dm_env_rpc EnvironmentRequest (answered INVALID_ARGUMENT)",
                len(data),
                self.peer,
            )
            response = pb.EnvironmentResponse()
            response.error.code = _codes().INVALID_ARGUMENT
            response.error.message = (
                f"malformed message: {len(data)} bytes that do not parse as a dm_env_rpc.v1.EnvironmentRequest"
            )
            return response
        return self.handle(request)

    def handle(self, request):
        pb = _pb()
        payload = request.WhichOneof("payload")
        response = pb.EnvironmentResponse()
        try:
            if payload == "step":
                self.step(request.step, response.step)
            elif payload == "create_world":
                response.create_world.CopyFrom(self.create_world(request.create_world))
            elif payload == "join_world":
                response.join_world.CopyFrom(self.join_world(request.join_world))
            elif payload == "reset":
                response.reset.CopyFrom(self.reset(request.reset))
            elif payload == "reset_world":
                response.reset_world.CopyFrom(self.reset_world(request.reset_world))
            elif payload == "leave_world":
                self.leave_world()
                response.leave_world.SetInParent()
            elif payload == "destroy_world":
                self.servicer.destroy_world(request.destroy_world.world_name, self)
                response.destroy_world.SetInParent()
            elif payload is None:
                raise _invalid("empty EnvironmentRequest: set one of its payloads (create_world, step …)")
            else:
                raise ServerError(_codes().UNIMPLEMENTED, f"{payload} requests are not supported by this server")
        except ServerError as exc:
            response = pb.EnvironmentResponse()
            response.error.code = exc.code
            response.error.message = exc.message
        except Exception as exc:  # a bug: report it, keep serving
            text = f"{type(exc).__name__}: {shorten(exc, 200)}"
            self.servicer.internal_log.error("internal error handling %s: %s", payload, text, exc_info=exc)
            response = pb.EnvironmentResponse()
            response.error.code = _codes().INTERNAL
            response.error.message = f"internal error handling {payload}: {text}"
        return response

    # -- worlds
    def create_world(self, request):
        settings = request.settings
        _check_names("CreateWorld", settings, ("seed", "levelName", "episodeId", "EventSubscriptionRegex", "shareable"))
        for required in ("seed", "levelName"):
            if required not in settings:
                raise _invalid(f"CreateWorld needs the setting {required!r} (settings: seed, levelName)")
        seed = _int_setting("seed", settings["seed"], 0, 2**32 - 1)
        level_name = _check_level(_str_setting("levelName", settings["levelName"]))
        if "episodeId" in settings:
            _int_setting("episodeId", settings["episodeId"], -(2**63), 2**63 - 1)
        subscribed = None
        if "EventSubscriptionRegex" in settings:
            pattern = _str_setting("EventSubscriptionRegex", settings["EventSubscriptionRegex"], MAX_PATTERN_LENGTH)
            try:
                subscribed = subscribed_events(pattern)
            except FilterError as exc:
                raise _invalid(f"EventSubscriptionRegex {short_repr(pattern, 60)} is not allowed: {exc}") from None
        shareable = _bool_setting("shareable", settings["shareable"]) if "shareable" in settings else False
        name = self.servicer.create_world(level_name, seed, subscribed, self, shareable=shareable)
        return _pb().CreateWorldResponse(world_name=name)

    def join_world(self, request):
        if self.world is not None:
            raise _precondition(f"already joined to world {self.world.name!r}: send LeaveWorld first")
        settings = request.settings
        _check_names("JoinWorld", settings, ("width", "height"))
        width = _int_setting("width", settings["width"], 1, MAX_PICTURE_SIDE) if "width" in settings else DEFAULT_WIDTH
        height = (
            _int_setting("height", settings["height"], 1, MAX_PICTURE_SIDE) if "height" in settings else DEFAULT_HEIGHT
        )
        if width * height > MAX_PICTURE_PIXELS:
            raise _invalid(
                f"the picture width x height = {width} x {height} = {width * height} pixels is too large: "
                f"at most {MAX_PICTURE_PIXELS} pixels (e.g. 640 x 480), each side at most {MAX_PICTURE_SIDE}"
            )
        world = self.servicer.join(request.world_name, self)
        self.world = world
        self.state = self.NEW_EPISODE
        if self.painter is None or (self.painter.width, self.painter.height) != (width, height):
            self.painter = TrialPainter(width, height)
        self._rgb_cache = None
        self.specs = _make_specs(world, width, height)
        self._obs_specs = dict(self.specs.observations)
        return _pb().JoinWorldResponse(specs=self.specs)

    def leave_world(self) -> None:
        if self.world is not None:
            self.servicer.leave(self.world, self)
            self.world = None
            self.specs = None

    def reset(self, request):
        if self.world is None:
            raise _precondition("not joined to a world: send JoinWorld before Reset")
        if request.settings:
            raise _invalid(f"Reset takes no settings, got {_names_text(sorted(request.settings, key=len))}")
        self.state = self.NEW_EPISODE
        return _pb().ResetResponse(specs=self.specs)

    def reset_world(self, request):
        world = self.servicer.get_world(request.world_name, self, "reset")
        settings = request.settings
        _check_names("ResetWorld", settings, ("seed",))
        if "seed" in settings:
            world.seed = _int_setting("seed", settings["seed"], 0, 2**32 - 1)
            if world.recorder is not None:
                world.recorder.seed = world.seed
        world.episodes_started = 0
        joined = world.joined_by
        if isinstance(joined, _Session):
            joined.state = self.NEW_EPISODE
        return _pb().ResetWorldResponse()

    # -- stepping
    def step(self, request, response) -> None:
        """Play one step and fill ``response`` (the ``StepResponse`` to send)."""
        world = self.world
        if world is None:
            raise _precondition("not joined to a world: send CreateWorld and JoinWorld before Step")
        requested = request.requested_observations
        obs_specs = self._obs_specs
        for uid in requested:
            if uid not in obs_specs:
                known = ", ".join(f"{u} ({s.name})" for u, s in sorted(obs_specs.items()))
                raise _invalid(f"requested observation uid {uid} is unknown: known uids are {known}")
        recorder = world.recorder
        game = world.game
        if self.state == self.NEW_EPISODE:
            if recorder is not None:
                recorder.take(build=False)
            world.start_episode()  # actions of the first step are ignored (dm_env_rpc)
            self.state = self.RUNNING
            reward, terminated = 0.0, False
        else:
            action = self._parse_action(request.actions, world.num_actions)
            if recorder is not None:
                recorder.frame += 1
            reward, terminated = game.step(action)
            if terminated:
                self.state = self.NEW_EPISODE
        response.state = _TERMINATED if terminated else _RUNNING
        observations = response.observations
        for uid in requested:
            if uid in observations:
                continue
            if uid == OBS_SYMBOLIC:
                tensor = observations[uid]
                tensor.floats.array.extend(game.obs.tolist())
                tensor.shape.append(game.obs.shape[0])
            elif uid == OBS_SCORE:
                observations[uid].doubles.array.append(world.episode_return)
            elif uid == OBS_RGB:
                observations[uid].CopyFrom(self._rgb_tensor(game))
            elif uid == OBS_EVENTS:
                events = recorder.take() if recorder is not None else []
                tensor = observations[uid]
                tensor.protos.array.extend(events)
                tensor.shape.append(len(events))
            elif uid == OBS_REWARD:
                observations[uid].doubles.array.append(float(reward))
            elif uid == OBS_DISCOUNT:
                observations[uid].doubles.array.append(0.0 if terminated else 1.0)
        if recorder is not None and OBS_EVENTS not in requested:
            recorder.take(build=False)

    def _rgb_tensor(self, game):
        image = self.painter.paint(game)
        cache = self._rgb_cache
        if cache is not None and cache[0] is image:
            return cache[1]
        tensor = _pb().Tensor()
        tensor.uint8s.array = image.tobytes()
        tensor.shape.extend(image.shape)
        self._rgb_cache = (image, tensor)
        return tensor

    def _parse_action(self, actions, num_actions: int) -> int:
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
                raise _invalid(f"unknown action uid {uid}: the only action is uid {ACTION_UID} ('action')")
            which = tensor.WhichOneof("payload")
            if which not in _INT_PAYLOADS:
                raise _invalid(f"action 'action' must be an integer (int64) scalar, got a {which} tensor")
            if len(tensor.shape) != 0:
                raise _invalid(f"action 'action' must be a scalar (shape []), got shape {_shape_text(tensor.shape)}")
            values = getattr(tensor, which).array
            if which in ("int8s", "uint8s"):
                values = np.frombuffer(values, dtype=np.int8 if which == "int8s" else np.uint8)
            if len(values) != 1:
                raise _invalid(f"action 'action' must hold exactly one value, got {len(values)}")
            action = int(values[0])
            if not 0 <= action < num_actions:
                raise _invalid(f"action {action} out of range: allowed 0..{num_actions - 1}")
        return action

    def close(self) -> None:
        self.leave_world()
        self.servicer.drop_owned(self)


def _make_specs(world: _World, width: int, height: int):
    from dm_env_rpc.v1 import tensor_spec_utils

    pb = _pb()
    specs = pb.ActionObservationSpecs()
    action = specs.actions[ACTION_UID]
    action.name, action.dtype = "action", pb.DataType.INT64
    tensor_spec_utils.set_bounds(action, np.int64(0), np.int64(world.num_actions - 1))
    low, high = observation_bounds(world.game.observe_used)
    symbolic = specs.observations[OBS_SYMBOLIC]
    symbolic.name, symbolic.dtype = "symbolic_obs", pb.DataType.FLOAT
    symbolic.shape.extend(low.shape)
    tensor_spec_utils.set_bounds(symbolic, low, high)
    score = specs.observations[OBS_SCORE]
    score.name, score.dtype = "Score", pb.DataType.DOUBLE
    rgb = specs.observations[OBS_RGB]
    rgb.name, rgb.dtype = "RGB_INTERLEAVED", pb.DataType.UINT8
    rgb.shape.extend((height, width, 3))
    events = specs.observations[OBS_EVENTS]
    events.name, events.dtype = "events", pb.DataType.PROTO
    events.shape.append(-1)
    reward = specs.observations[OBS_REWARD]
    reward.name, reward.dtype = "reward", pb.DataType.DOUBLE
    discount = specs.observations[OBS_DISCOUNT]
    discount.name, discount.dtype = "discount", pb.DataType.DOUBLE
    tensor_spec_utils.set_bounds(discount, np.float64(0.0), np.float64(1.0))
    return specs


# --------------------------------------------------------------------------- servicer


class AlchemyServicer:
    """The dm_env_rpc ``Environment`` service over symbolic Alchemy worlds, for a ``grpc.aio`` server.

    :meth:`rpc_handlers` registers its one method (``Process``) with a server; it imports ``grpc``
    only then, so that importing this module does not: :func:`main` first chooses gRPC's
    transport (:mod:`alchemy_gym.rpc.tuning`), which gRPC reads at its import. ``Process`` takes
    the raw request bytes and parses them itself, so that a malformed message gets an error
    status (and one short log line) instead of a gRPC traceback and a dead stream.

    Every stream is a coroutine on the server's one event loop: a request is handled to the end
    before the next one starts (the game is pure Python; threads would only take turns on the
    GIL), and many streams cost no threads. The world registry is also safe to use from threads.

    Args:
        max_worlds: worlds on the server at once.
        max_connections: streams served at once; one more is refused at once (RESOURCE_EXHAUSTED).
        max_worlds_per_connection: worlds one stream may hold at once.
        idle_timeout: seconds without a request after which a stream is ended (DEADLINE_EXCEEDED)
            and its worlds destroyed; ``None`` (the default) never ends a stream for idleness.
    """

    def __init__(
        self,
        max_worlds: int = MAX_WORLDS,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_worlds_per_connection: int = DEFAULT_MAX_WORLDS_PER_CONNECTION,
        idle_timeout: float | None = None,
    ) -> None:
        self.idle_timeout = check_idle_timeout(idle_timeout)
        self._worlds: dict[str, _World] = {}
        self._lock = threading.Lock()
        self.max_worlds = max_worlds
        self.max_connections = max_connections
        self.max_worlds_per_connection = max_worlds_per_connection
        self.connections = 0  # streams being served
        # one short line per event, at most 5 a minute per kind (then a count of the others)
        self.malformed_log = RateLimitedLog(log)
        self.internal_log = RateLimitedLog(log)
        self.refusal_log = RateLimitedLog(log)
        self.idle_log = RateLimitedLog(log)

    def rpc_handlers(self):
        """``(service name, {method: handler})`` of the dm_env_rpc service, served by this servicer."""
        import grpc

        handler = grpc.stream_stream_rpc_method_handler(
            self.Process,
            request_deserializer=None,  # bytes: parsed by the session (see handle_bytes)
            response_serializer=_pb().EnvironmentResponse.SerializeToString,
        )
        return "dm_env_rpc.v1.Environment", {"Process": handler}

    def full_message(self) -> str:
        """The details of the RESOURCE_EXHAUSTED status a stream beyond ``max_connections`` gets."""
        return (
            f"{SERVER_FULL}: it serves at most {self.max_connections} connections at once and all are in use; "
            "try again later, or start a server with a larger --max-connections"
        )

    def idle_message(self) -> str:
        """The details of the DEADLINE_EXCEEDED status that ends an idle stream."""
        return (
            f"{IDLE_CLOSED}: no request for {self.idle_timeout:g} s (the server's idle timeout); "
            "its worlds were destroyed"
        )

    async def Process(self, request_iterator, context) -> None:  # noqa: N802 (gRPC's name)
        import asyncio

        import grpc

        with self._lock:
            admitted = self.connections < self.max_connections
            if admitted:
                self.connections += 1
        if not admitted:
            self.refusal_log.warning(
                "refused a connection from %s: all %d connections are in use", context.peer(), self.max_connections
            )
            await self._refuse(context)
            return
        try:
            session = _Session(self, context.peer())
            try:
                while True:
                    if self.idle_timeout is None:
                        data = await context.read()
                    else:
                        try:
                            data = await asyncio.wait_for(context.read(), self.idle_timeout)
                        except asyncio.TimeoutError:
                            self.idle_log.warning(
                                "closed the connection from %s: no request for %g s", context.peer(), self.idle_timeout
                            )
                            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
                            context.set_details(self.idle_message())
                            return
                    if data is grpc.aio.EOF:
                        return
                    await context.write(session.handle_bytes(data))
            finally:  # also when the client cancels the stream or goes away
                session.close()
        finally:
            with self._lock:
                self.connections -= 1

    async def _refuse(self, context) -> None:
        """End a stream beyond ``max_connections`` with RESOURCE_EXHAUSTED and :meth:`full_message`.

        The client's first request is awaited first (for at most :data:`_REFUSAL_READ_WAIT` s): a
        ``grpc.aio`` client whose first write is still going out when the status arrives reports
        "INTERNAL: Internal error from Core" instead of the status (about one time in six here).
        The status is set and the handler returns: ``context.abort`` would raise, and its traceback
        would keep the server's objects in a reference cycle until the next garbage collection.
        """
        import asyncio

        import grpc

        try:
            await asyncio.wait_for(context.read(), _REFUSAL_READ_WAIT)
        except Exception:  # no request in time, or the client went away: refuse all the same
            pass
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(self.full_message())

    # world registry (called by sessions)
    def create_world(self, level_name: str, seed: int, subscribed, owner: _Session, *, shareable: bool = False) -> str:
        with self._lock:
            self._check_room(owner)
        world = _World("", level_name, seed, subscribed, owner, shareable)  # outside the lock: builds a game
        with self._lock:
            self._check_room(owner)  # again: another thread may have created one meanwhile
            name = "world_" + secrets.token_hex(8)
            while name in self._worlds:
                name = "world_" + secrets.token_hex(8)
            world.name = name
            self._worlds[name] = world
        return name

    def _check_room(self, owner: _Session) -> None:
        """RESOURCE_EXHAUSTED unless the server and ``owner`` may have one more world (lock held)."""
        if len(self._worlds) >= self.max_worlds:
            raise ServerError(
                _codes().RESOURCE_EXHAUSTED,
                f"this server holds at most {self.max_worlds} worlds and all exist: try again later",
            )
        owned = sum(1 for world in self._worlds.values() if world.owner is owner)
        if owned >= self.max_worlds_per_connection:
            raise ServerError(
                _codes().RESOURCE_EXHAUSTED,
                f"a connection may hold at most {self.max_worlds_per_connection} worlds: destroy one first",
            )

    def get_world(self, name: str, session: _Session | None = None, action: str = "use") -> _World:
        """The world named ``name``, if ``session`` may ``action`` it (its creator, or any if shareable)."""
        _check_world_name(name)
        with self._lock:
            world = self._worlds.get(name)
            own = sorted(n for n, w in self._worlds.items() if w.owner is session)
        if world is None:
            mine = f"this connection's worlds are {own}" if own else "this connection has no world"
            raise ServerError(_codes().NOT_FOUND, f"no world named {short_repr(name)}: {mine}")
        if session is not None and world.owner is not session and not world.shareable:
            raise ServerError(
                _codes().PERMISSION_DENIED,
                f"cannot {action} world {name!r}: it belongs to another connection, "
                "which did not create it with the setting shareable=True",
            )
        return world

    def join(self, name: str, session: _Session) -> _World:
        world = self.get_world(name, session, "join")
        with self._lock:
            if world.joined_by is not None:
                raise _precondition(f"world {name!r} is already joined by another connection")
            world.joined_by = session
        return world

    def leave(self, world: _World, session: _Session) -> None:
        with self._lock:
            if world.joined_by is session:
                world.joined_by = None

    def destroy_world(self, name: str, session: _Session) -> None:
        world = self.get_world(name, session, "destroy")
        with self._lock:
            if self._worlds.get(name) is not world:
                raise ServerError(_codes().NOT_FOUND, f"no world named {name!r} (destroyed meanwhile)")
            if world.joined_by is not None:
                raise _precondition(f"world {name!r} is joined: send LeaveWorld before DestroyWorld")
            del self._worlds[name]

    def drop_owned(self, session: _Session) -> None:
        with self._lock:
            for name in [n for n, w in self._worlds.items() if w.owner is session and w.joined_by is None]:
                del self._worlds[name]
            for world in self._worlds.values():
                if world.owner is session:
                    world.owner = world.joined_by  # a shareable world still in use elsewhere: hand it over

    @property
    def num_worlds(self) -> int:
        with self._lock:
            return len(self._worlds)

    def flush_logs(self) -> None:
        """Log the counts of suppressed lines (at shutdown)."""
        for rate_limited in (self.malformed_log, self.internal_log, self.refusal_log, self.idle_log):
            rate_limited.flush()


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    idle_timeout: float | None = None,
):
    """Start a ``grpc.aio`` server of :class:`AlchemyServicer` on the running loop; returns ``(server, bound_port)``.

    ``port=0`` picks a free port. At most ``max_connections`` streams are served at once; one more
    is refused at once with RESOURCE_EXHAUSTED (``alchemy-gym server is full: …``). A request
    message larger than ``max_request_bytes`` ends its stream with RESOURCE_EXHAUSTED. With
    ``idle_timeout`` (seconds), a stream without a request for that long is ended and its worlds
    destroyed. ``OSError`` if the address cannot be bound.
    """
    import grpc

    servicer = AlchemyServicer(max_connections=max_connections, idle_timeout=idle_timeout)
    # gRPC's own limit is a backstop beyond ours (which answers with a message that names the limit)
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_connections + _REFUSAL_HEADROOM,
        options=[("grpc.max_receive_message_length", max_request_bytes)],
    )
    service, handlers = servicer.rpc_handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.63: looked up without the generic path
        server.add_registered_method_handlers(service, handlers)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc} (is the port in use?)") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address} (is the port in use?)")
    await server.start()
    server.servicer = servicer  # for tests and introspection
    return server, bound


class BackgroundServer:
    """The server on its own event loop in a background thread (for in-process use: tests, notebooks).

    Made by :func:`make_server`. ``stop(grace)`` stops it, ends the thread and returns a set
    ``threading.Event`` (as ``grpc.Server.stop`` returns one to wait on).
    """

    def __init__(self, host: str, port: int, max_connections: int, **options) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._server = None
        self.servicer: AlchemyServicer | None = None
        self.port = 0
        self._thread = threading.Thread(
            target=self._run,
            args=(host, port, max_connections, options),
            name="alchemy-rpc-server",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self, host: str, port: int, max_connections: int, options: dict) -> None:
        import asyncio

        loop = self._loop
        try:
            try:
                self._server, self.port = loop.run_until_complete(
                    start_server(host, port, max_connections=max_connections, **options)
                )
                self.servicer = self._server.servicer
            except BaseException as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()  # until _shutdown stops it
        finally:
            self._server = None  # freed here, with its loop still open
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._stopped.set()

    async def _shutdown(self, grace: float | None) -> None:
        try:
            if self._server is not None:
                await self._server.stop(grace)
        finally:
            self._loop.stop()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop serving (after ``grace`` seconds for streams in flight) and end the thread (idempotent)."""
        loop = self._loop
        if not self._stopped.is_set():
            try:
                loop.call_soon_threadsafe(loop.create_task, self._shutdown(grace))
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._thread.join((grace or 0) + 10)
        return self._stopped


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    idle_timeout: float | None = None,
):
    """A started server of :class:`AlchemyServicer` on a background thread; returns ``(server, bound_port)``.

    The server is a :class:`BackgroundServer` (``server.stop(grace)``, ``server.servicer``); see
    :func:`start_server` for the arguments. ``alchemy-gym serve`` runs the same server on its main thread.
    """
    server = BackgroundServer(
        host, port, max_connections, max_request_bytes=max_request_bytes, idle_timeout=idle_timeout
    )
    return server, server.port


def main(argv: list[str] | None = None) -> int:
    """``alchemy-gym serve``: serve symbolic Alchemy over dm_env_rpc until SIGINT/SIGTERM.

    Unless ``GRPC_EXPERIMENTS`` is set, the process uses gRPC's faster loopback transport
    (:func:`alchemy_gym.rpc.tuning.use_fast_grpc_transport`, before ``grpc`` is imported).
    """
    import asyncio

    from alchemy_gym.rpc import tuning

    tuning.use_fast_grpc_transport()

    parser = argparse.ArgumentParser(
        prog="alchemy-gym serve",
        description="Serve symbolic Alchemy over dm_env_rpc (the interface of the 3D Unity server).",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"concurrent client streams (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="end a client stream that sends no request for this long and destroy its worlds (default 0: never)",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} out of range: allowed 0..65535")
    if args.max_connections < 1:
        parser.error("--max-connections must be >= 1")
    if not args.idle_timeout >= 0:  # also NaN
        parser.error(f"--idle-timeout must be >= 0 seconds (0: never), got {args.idle_timeout:g}")
    idle_timeout = args.idle_timeout or None
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def serve() -> int:
        try:
            server, port = await start_server(
                args.host, args.port, max_connections=args.max_connections, idle_timeout=idle_timeout
            )
        except OSError as exc:
            print(f"alchemy-gym serve: {exc}", file=sys.stderr, flush=True)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        kernel = AlchemyGame().batch.kernel_name
        print(
            f"alchemy-gym serve: dm_env_rpc on {args.host}:{port} ({tuning.describe()}; game backend {kernel})",
            file=sys.stderr,
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await server.stop(1.0)
            server.servicer.flush_logs()
        return 0

    return asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
