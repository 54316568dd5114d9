"""Symbolic Alchemy served over dm_env_rpc: the same game as the in-process env, behind the 3D interface.

Run it with ``alchemy-gym serve --port 10000`` or ``python -m alchemy_gym.rpc.server``.
It binds to 127.0.0.1 unless ``--host`` says otherwise (the Docker image passes
``--host 0.0.0.0`` inside its container).

Protocol (dm_env_rpc v1, interface spec §2):

* ``CreateWorld``: settings ``seed`` (int 0..2**32-1, required), ``levelName`` (string, required: a 3D
  or symbolic level name, or ``alchemy/evaluation_episodes/i``), ``episodeId`` (int, accepted and
  ignored) and ``EventSubscriptionRegex`` (string: events whose name it matches (``re.search``) are
  sent; none without it).
* ``JoinWorld``: settings ``width``, ``height`` (ints 1..4096; default 96×72) → the specs below.
* ``Step``: the first step after joining, after ``Reset`` or after an episode ended starts a new
  episode and ignores its actions; later steps play ``action`` (a no-op when absent).
* ``Reset``: the next step starts a new episode (continuing the world's random stream).
* ``ResetWorld``: optional ``seed``; restarts the world's random stream (with that seed).
* ``LeaveWorld`` / ``DestroyWorld``: as dm_env_rpc; a world lives at most as long as the
  connection that created it (unless another connection has joined it).

Specs: action ``action`` (int64 scalar, 0..39: the action of
:class:`~alchemy_gym.envs.symbolic.SymbolicAlchemyEnv`); observations
``symbolic_obs`` (float32 (39,)), ``Score`` (float64, the episode's cumulative
reward), ``RGB_INTERLEAVED`` (uint8 (height, width, 3), see
:mod:`alchemy_gym.render`) and ``events`` (``google.protobuf.Any`` array of
``deepmind.dmworlds.WorldEvent``, see :mod:`alchemy_gym.rpc.events`). There are
no ``reward``/``discount`` observations: as with the Unity server's documented
observations, the reward is the change of ``Score`` and ``TERMINATED`` ends an episode.

The first episode of a world is ``SymbolicAlchemyEnv.reset(seed=seed)``, later
ones ``reset()``: a world plays exactly the episodes of the in-process env
seeded with the world seed.

Errors come back as dm_env_rpc error statuses (the stream stays open), with a
message that says what was wrong and what is allowed.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import re
import signal
import sys
import threading

import numpy as np

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

log = logging.getLogger("alchemy_gym.rpc.server")

DEFAULT_PORT = 10000
DEFAULT_WIDTH, DEFAULT_HEIGHT = 96, 72
MAX_PICTURE_SIDE = 4096
MAX_WORLDS = 64
#: Concurrent streams a server accepts (a stream costs no thread: a vector env may open one per sub-env).
DEFAULT_MAX_CONNECTIONS = 64

ACTION_UID = 1
OBS_SYMBOLIC, OBS_SCORE, OBS_RGB, OBS_EVENTS = 1, 2, 3, 4
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
        raise _invalid(f"setting {name!r} is not a valid tensor: {exc}") from None


def _int_setting(name: str, tensor, low: int, high: int) -> int:
    which = tensor.WhichOneof("payload")
    value = _unpack_setting(name, tensor)
    if which not in _INT_PAYLOADS or np.ndim(value) != 0:
        raise _invalid(f"setting {name!r} must be an integer scalar in {low}..{high}, got {which} {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise _invalid(f"setting {name!r}={value} out of range: allowed {low}..{high}")
    return value


def _str_setting(name: str, tensor) -> str:
    which = tensor.WhichOneof("payload")
    value = _unpack_setting(name, tensor)
    if which != "strings" or np.ndim(value) != 0:
        raise _invalid(f"setting {name!r} must be a string scalar, got {which} {value!r}")
    return str(value)


def _check_names(kind: str, settings, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise _invalid(f"unknown {kind} setting(s) {unknown}: allowed {list(allowed)}")


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

    def __init__(self, game, regex: re.Pattern, reward_weights, seed: int) -> None:
        self.game = game
        self.regex = regex
        self.reward_weights = reward_weights
        self.seed = seed
        self.pending: list = []  # (name, frame, detail builder): protos are built only when requested
        self._properties: dict = {}  # ("stone" | "potion", latent) → message, for the current chemistry
        self.frame = 0
        game.add_listener(self)

    def _emit(self, name: str, detail) -> None:
        """Record an event if subscribed; ``detail`` is a dict or a zero-argument callable returning one."""
        if self.regex.search(name):
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
    """One created world: a :class:`SymbolicAlchemyEnv` plus its seed and subscriptions."""

    def __init__(self, name: str, level_name: str, seed: int, regex: re.Pattern | None, owner: object) -> None:
        from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv

        self.name = name
        self.level_name = level_name
        self.seed = seed
        self.owner = owner
        self.joined_by: object | None = None
        self.episode = parse_evaluation_name(level_name)
        env_level = EVALUATION_PREFIX if self.episode is not None else find_level(level_name).name
        self.env = SymbolicAlchemyEnv(env_level)
        self.recorder = _EventRecorder(self.env.game, regex, self.env.reward_weights, seed) if regex else None
        self.episodes_started = 0
        self.num_actions = int(self.env.action_space.n)

    def start_episode(self) -> None:
        options = {"episode": self.episode} if self.episode is not None else None
        if self.episodes_started == 0:
            self.env.reset(seed=self.seed, options=options)
        else:
            self.env.reset(options=options)
        self.episodes_started += 1


def _check_level(level_name: str) -> str:
    try:
        level = find_level(level_name)
    except ValueError as exc:
        raise _invalid(f"levelName: {exc}") from None
    if level.name == EVALUATION_PREFIX and parse_evaluation_name(level_name) is None:
        return level.name
    return level_name


class _Session:
    """The state of one ``Process`` stream (one client connection)."""

    RUNNING, NEW_EPISODE = "running", "new_episode"

    def __init__(self, servicer: AlchemyServicer) -> None:
        self.servicer = servicer
        self.world: _World | None = None
        self.state = self.NEW_EPISODE
        self.specs = None
        self.painter: TrialPainter | None = None
        self._rgb_cache: tuple[int, object] | None = None
        self._obs_specs = {}

    # -- dispatch
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
            log.exception("internal error handling %s", payload)
            response = pb.EnvironmentResponse()
            response.error.code = _codes().INTERNAL
            response.error.message = f"internal error handling {payload}: {type(exc).__name__}: {exc}"
        return response

    # -- worlds
    def create_world(self, request):
        settings = request.settings
        _check_names("CreateWorld", settings, ("seed", "levelName", "episodeId", "EventSubscriptionRegex"))
        for required in ("seed", "levelName"):
            if required not in settings:
                raise _invalid(f"CreateWorld needs the setting {required!r} (settings: seed, levelName)")
        seed = _int_setting("seed", settings["seed"], 0, 2**32 - 1)
        level_name = _check_level(_str_setting("levelName", settings["levelName"]))
        if "episodeId" in settings:
            _int_setting("episodeId", settings["episodeId"], -(2**63), 2**63 - 1)
        regex = None
        if "EventSubscriptionRegex" in settings:
            pattern = _str_setting("EventSubscriptionRegex", settings["EventSubscriptionRegex"])
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise _invalid(f"EventSubscriptionRegex {pattern!r} is not a valid regular expression: {exc}") from None
        name = self.servicer.create_world(level_name, seed, regex, self)
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
            raise _invalid(f"Reset takes no settings, got {sorted(request.settings)}")
        self.state = self.NEW_EPISODE
        return _pb().ResetResponse(specs=self.specs)

    def reset_world(self, request):
        world = self.servicer.get_world(request.world_name)
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
        env = world.env
        if self.state == self.NEW_EPISODE:
            if recorder is not None:
                recorder.take(build=False)
            world.start_episode()  # actions of the first step are ignored (dm_env_rpc)
            self.state = self.RUNNING
            terminated = False
        else:
            action = self._parse_action(request.actions, world.num_actions)
            if recorder is not None:
                recorder.frame += 1
            _obs, _reward, terminated, _truncated, _info = env.step(action)
            if terminated:
                self.state = self.NEW_EPISODE
        response.state = _TERMINATED if terminated else _RUNNING
        observations = response.observations
        for uid in requested:
            if uid in observations:
                continue
            if uid == OBS_SYMBOLIC:
                tensor = observations[uid]
                tensor.floats.array.extend(env.game.obs.tolist())
                tensor.shape.append(env.game.obs.shape[0])
            elif uid == OBS_SCORE:
                observations[uid].doubles.array.append(env.episode_return)
            elif uid == OBS_RGB:
                observations[uid].CopyFrom(self._rgb_tensor(env.game))
            elif uid == OBS_EVENTS:
                events = recorder.take() if recorder is not None else []
                tensor = observations[uid]
                tensor.protos.array.extend(events)
                tensor.shape.append(len(events))
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
                raise _invalid(f"action 'action' must be a scalar (shape []), got shape {list(tensor.shape)}")
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
    space = world.env.observation_space
    symbolic = specs.observations[OBS_SYMBOLIC]
    symbolic.name, symbolic.dtype = "symbolic_obs", pb.DataType.FLOAT
    symbolic.shape.extend(space.shape)
    tensor_spec_utils.set_bounds(symbolic, space.low.astype(np.float32), space.high.astype(np.float32))
    score = specs.observations[OBS_SCORE]
    score.name, score.dtype = "Score", pb.DataType.DOUBLE
    rgb = specs.observations[OBS_RGB]
    rgb.name, rgb.dtype = "RGB_INTERLEAVED", pb.DataType.UINT8
    rgb.shape.extend((height, width, 3))
    events = specs.observations[OBS_EVENTS]
    events.name, events.dtype = "events", pb.DataType.PROTO
    events.shape.append(-1)
    return specs


# --------------------------------------------------------------------------- servicer


class AlchemyServicer:
    """The dm_env_rpc ``Environment`` service over symbolic Alchemy worlds, for a ``grpc.aio`` server.

    It has the one method of ``dm_env_rpc_pb2_grpc.EnvironmentServicer`` (``Process``) without
    deriving from it, so that importing this module does not import ``grpc``: :func:`main` first
    chooses gRPC's transport (:mod:`alchemy_gym.rpc.tuning`), which gRPC reads at its import.

    Every stream is a coroutine on the server's one event loop: a request is handled to the end
    before the next one starts (the game is pure Python; threads would only take turns on the
    GIL), and many streams cost no threads. The world registry is also safe to use from threads.
    """

    def __init__(self, max_worlds: int = MAX_WORLDS) -> None:
        self._worlds: dict[str, _World] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.max_worlds = max_worlds

    async def Process(self, request_iterator, context) -> None:  # noqa: N802 (gRPC's name)
        import grpc

        session = _Session(self)
        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    return
                await context.write(session.handle(request))
        finally:  # also when the client cancels the stream or goes away
            session.close()

    # world registry (called by sessions)
    def create_world(self, level_name: str, seed: int, regex, owner: _Session) -> str:
        with self._lock:
            if len(self._worlds) >= self.max_worlds:
                raise ServerError(
                    _codes().RESOURCE_EXHAUSTED,
                    f"this server holds at most {self.max_worlds} worlds: destroy one first",
                )
            name = f"world_{next(self._counter)}"
        world = _World(name, level_name, seed, regex, owner)  # outside the lock: builds an env
        with self._lock:
            self._worlds[name] = world
        return name

    def get_world(self, name: str) -> _World:
        with self._lock:
            world = self._worlds.get(name)
            known = sorted(self._worlds)
        if world is None:
            raise ServerError(_codes().NOT_FOUND, f"no world named {name!r}: existing worlds are {known}")
        return world

    def join(self, name: str, session: _Session) -> _World:
        world = self.get_world(name)
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
        with self._lock:
            world = self._worlds.get(name)
            if world is None:
                raise ServerError(
                    _codes().NOT_FOUND, f"no world named {name!r}: existing worlds are {sorted(self._worlds)}"
                )
            if world.joined_by is not None:
                raise _precondition(f"world {name!r} is joined: send LeaveWorld before DestroyWorld")
            del self._worlds[name]

    def drop_owned(self, session: _Session) -> None:
        with self._lock:
            for name in [n for n, w in self._worlds.items() if w.owner is session and w.joined_by is None]:
                del self._worlds[name]
            for world in self._worlds.values():
                if world.owner is session:
                    world.owner = world.joined_by  # still in use elsewhere: hand it over

    @property
    def num_worlds(self) -> int:
        with self._lock:
            return len(self._worlds)


async def start_server(host: str = "127.0.0.1", port: int = 0, *, max_connections: int = DEFAULT_MAX_CONNECTIONS):
    """Start a ``grpc.aio`` server of :class:`AlchemyServicer` on the running loop; returns ``(server, bound_port)``.

    ``port=0`` picks a free port. At most ``max_connections`` streams are served at once; more
    are refused with RESOURCE_EXHAUSTED. ``OSError`` if the address cannot be bound.
    """
    import grpc
    from dm_env_rpc.v1 import dm_env_rpc_pb2_grpc

    server = grpc.aio.server(maximum_concurrent_rpcs=max_connections)
    servicer = AlchemyServicer()
    dm_env_rpc_pb2_grpc.add_EnvironmentServicer_to_server(servicer, server)
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

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._server = None
        self.servicer: AlchemyServicer | None = None
        self.port = 0
        self._thread = threading.Thread(
            target=self._run, args=(host, port, max_connections), name="alchemy-rpc-server", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self, host: str, port: int, max_connections: int) -> None:
        import asyncio

        loop = self._loop
        try:
            try:
                self._server, self.port = loop.run_until_complete(
                    start_server(host, port, max_connections=max_connections)
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


def make_server(host: str = "127.0.0.1", port: int = 0, *, max_connections: int = DEFAULT_MAX_CONNECTIONS):
    """A started server of :class:`AlchemyServicer` on a background thread; returns ``(server, bound_port)``.

    The server is a :class:`BackgroundServer` (``server.stop(grace)``, ``server.servicer``); see
    :func:`start_server` for the arguments. ``alchemy-gym serve`` runs the same server on its main thread.
    """
    server = BackgroundServer(host, port, max_connections)
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
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} out of range: allowed 0..65535")
    if args.max_connections < 1:
        parser.error("--max-connections must be >= 1")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def serve() -> int:
        try:
            server, port = await start_server(args.host, args.port, max_connections=args.max_connections)
        except OSError as exc:
            print(f"alchemy-gym serve: {exc}", file=sys.stderr, flush=True)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"alchemy-gym serve: dm_env_rpc on {args.host}:{port} ({tuning.describe()})", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop(1.0)
        return 0

    return asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
