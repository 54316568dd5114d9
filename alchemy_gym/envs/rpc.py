"""The 3D Alchemy env (or any dm_env_rpc Alchemy server) as a Gymnasium env.

:class:`RpcWorldClient` is the dm_env_rpc side of one env (its server, stream and world; requests
as coroutines on a ``grpc.aio`` stream); :class:`RpcAlchemyEnv` runs one on a private event loop,
:class:`alchemy_gym.envs.rpc_vector.RpcAlchemyVectorEnv` runs N of them concurrently on one.
"""

from __future__ import annotations

import dataclasses
import numbers
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from alchemy_gym.core.episodes import EpisodeCursor, check_episode_index, check_seed, reset_options
from alchemy_gym.envs.info import rpc_info, step_info
from alchemy_gym.envs.settings import Settings, render_mode_check, setting
from alchemy_gym.levels import (
    DEFAULT_LEVEL,
    EVALUATION_PREFIX,
    NUM_EVALUATION_EPISODES,
    find_level,
    parse_evaluation_name,
)
from alchemy_gym.rpc import DEFAULT_IMAGE
from alchemy_gym.rpc.connection import RequestTimeout, StreamClosed, is_refused
from alchemy_gym.rpc.events import WorldEvent, decode_event
from alchemy_gym.rpc.spaces import (
    SpecSpaces,
    check_action_keys,
    check_action_value,
    pack_value,
    specs_to_spaces,
    unpack_value,
)

try:  # the ``rpc`` extra
    import grpc
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import error as dm_error

    _TERMINATED = pb.EnvironmentStateType.TERMINATED
    _INTERRUPTED = pb.EnvironmentStateType.INTERRUPTED
    _RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]  # google.rpc.Code 8
except ImportError:  # pragma: no cover - reported when an env is made
    grpc = pb = dm_error = None

#: Observations that feed the reward / episode end / info rather than the observation space.
_NON_OBSERVATIONS = ("events", "reward", "discount")
#: What a lost server's message tells the single env's user to do.
_ENV_RECOVERY = "Recover with env.restart() (starts a new server; then call reset()) or env.close() and make a new env."


class RpcEnvError(RuntimeError):
    """The dm_env_rpc server failed or went away (the message says how to recover)."""


# ------------------------------------------------------------------------------ arguments


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _seconds(optional: bool):
    def check(name: str, value):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
            allowed = "a positive number of seconds or None" if optional else "a positive number of seconds"
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
        return float(value)

    return check


def _optional_str(name: str, value):
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a str or None, got {value!r}")
    return value


def _check_token(name: str, value):
    if value is not None and (
        not isinstance(value, str) or not value or not all(33 <= ord(c) <= 126 for c in value)
    ):  # the message never shows the token
        raise ValueError(f"{name} must be None or a str of printable ASCII characters without spaces")
    return value


def _check_address(name: str, value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(a, str) for a in value):
        return tuple(value)  # one per sub-env: the vector env checks the count
    raise ValueError(f"address must be 'host:port' (or, for the vector env, a list of them), got {value!r}")


def _check_level(name: str, level_name):
    if pb is None:
        raise ImportError("the 3D envs need the rpc extra: pip install 'alchemy-gym[rpc]'")
    level = find_level(level_name)
    if level.rpc_id is None:
        raise ValueError(
            f"level {level_name!r} has no 3D version: the 3D levels are "
            + ", ".join(f"{lv.name}" for lv in _rpc_levels())
            + f" and {EVALUATION_PREFIX}/0..{NUM_EVALUATION_EPISODES - 1}"
        )
    return level_name


@dataclass(frozen=True)
class RpcEnvConfig(Settings):
    """The settings of the 3D envs (:class:`RpcAlchemyEnv` and its vector env), checked before anything starts."""

    what = "3D env"
    owner = "RpcAlchemyEnv.__init__"

    level_name: str = setting(
        DEFAULT_LEVEL,
        "a 3D level (``alchemy/...``) or ``alchemy/evaluation_episodes[/i]``",
        _check_level,
        shown="the standard task",
    )
    image: str = setting(DEFAULT_IMAGE, "Docker image to run", shown="the Unity image")
    address: str | None = setting(
        None, "``host:port`` of a running server (no Docker; the vector env: one, or one per sub-env)", _check_address
    )
    binary: str | None = setting(None, "a local server program, or a dm_alchemy Unity build directory", _optional_str)
    token: str | None = dataclasses.field(  # a setting() kept out of the config's repr
        default=None,
        repr=False,
        metadata=setting(
            None, "the server's token (default: the launcher makes one for a server it starts that checks tokens)",
            _check_token, shown="None",
        ).metadata,
    )  # fmt: skip
    binary_args: Sequence[str] | None = setting(
        (), "its arguments (``{port}`` is replaced by the port; Unity's by default)",
        lambda n, v: None if v is None else tuple(str(a) for a in v),
    )  # fmt: skip
    environment: Mapping[str, str] | None = setting(None, "environment variables for the container / process")
    width: int = setting(96, "``RGB_INTERLEAVED`` width", _positive_int)
    height: int = setting(72, "``RGB_INTERLEAVED`` height", _positive_int)
    num_action_repeats: int = setting(1, "server steps per ``step()``", _positive_int)
    render_mode: str | None = setting(
        None, "``'rgb_array'`` returns the last ``RGB_INTERLEAVED``", render_mode_check("rgb_array")
    )
    connect_timeout: float = setting(60.0, "seconds to wait for the server", _seconds(False))
    request_timeout: float | None = setting(
        300.0, "seconds one request may wait for its answer (None: forever)", _seconds(True)
    )
    observations: Sequence[str] | None = setting(
        None, "names of the observations to request (default: all supported)",
        lambda n, v: None if v is None else list(v),
    )  # fmt: skip
    event_regex: str | None = setting(
        "DeepMind/.*", "``EventSubscriptionRegex`` (None: no subscription)", _optional_str
    )
    decode_events: bool = setting(True, "decode events into dicts (else name and raw bytes only)", lambda n, v: bool(v))
    docker_kwargs: Mapping[str, Any] | None = setting(
        None, "more ``DockerLauncher`` arguments (``port``, ``pull``, ``client`` …)", lambda n, v: dict(v or {})
    )

    def _check_together(self) -> None:
        if self.address is not None and self.binary is not None:
            raise ValueError("pass at most one of address= and binary= (neither: run the Docker image)")

    @classmethod
    def parse(cls, level_name: str | None = None, **kwargs: Any) -> RpcEnvConfig:
        """The settings of these keyword arguments (``level_name`` first, as the envs take it)."""
        if level_name is not None:
            kwargs["level_name"] = level_name
        return super().parse(**kwargs)

    @property
    def evaluation(self) -> bool:
        """The level is the evaluation set."""
        return find_level(self.level_name).is_evaluation

    @property
    def fixed_episode(self) -> int | None:
        """The episode of ``alchemy/evaluation_episodes/i`` (``None`` for other level names)."""
        return parse_evaluation_name(self.level_name) if self.evaluation else None

    def make_launcher(self, address: str | None = None):
        """A new (not started) launcher: at ``address`` if given, else the local binary, else Docker."""
        from alchemy_gym.rpc import launchers

        if address is not None:
            return launchers.AddressLauncher(address, token=self.token)
        if self.binary is not None:
            binary_args = self.binary_args
            return launchers.LocalBinaryLauncher(
                self.binary,
                None if binary_args is None else list(binary_args) or None,
                environment=self.environment,
                token=self.token,
            )
        return launchers.DockerLauncher(
            self.image, environment=self.environment, **{"token": self.token, **self.docker_kwargs}
        )


# -------------------------------------------------------------------------- one env's server


class RpcWorldClient:
    """One env's server, stream and world: the dm_env_rpc protocol of :class:`RpcAlchemyEnv`.

    Blocking work (starting the server) is in plain methods; every request is a coroutine on a
    ``grpc.aio`` stream (:class:`~alchemy_gym.rpc.connection.AioTransport`), run by the owner's
    event loop: one client on the single env's private loop, many at once on the vector env's.
    :meth:`pack_action` and :meth:`plan_reset` check their arguments and raise before anything
    is sent.

    Args:
        config: the env's arguments.
        address: this client's server address (overrides ``config.address``).
        label: how messages name this env (``"sub-env 3"``); ``""`` for a single env.
        recovery: what a lost server's message tells the user to do.
        first_episode, episode_stride: on the evaluation level, without an explicit episode,
            episodes ``first_episode, first_episode + stride, …`` are played.
    """

    def __init__(
        self,
        config: RpcEnvConfig,
        address: str | None = None,
        *,
        label: str = "",
        recovery: str = _ENV_RECOVERY,
        first_episode: int = 0,
        episode_stride: int = 1,
    ) -> None:
        self.config = config
        self.address = config.address if address is None else address
        self.label = label
        self.recovery = recovery
        self._cursor = EpisodeCursor(NUM_EVALUATION_EPISODES, first_episode, episode_stride)
        self.launcher = None
        self._connection = None  # the transport
        self._world_name: str | None = None
        self._world_level: str | None = None
        self._world_fresh = False
        self.world_seed: int | None = None
        self.episode_index: int | None = None
        self.needs_reset = True
        self._last_score = 0.0
        #: The world events of the last reset or step (all repeats); ``None`` when the server sent no events.
        self.last_events: list | None = None
        self._trial = -1  # the trial in progress, counted from the world's TrialStarted events (-1: none seen)
        self._trial_reward = 0.0
        self._return = 0.0
        self.last_rgb: np.ndarray | None = None
        self.specs = None
        self.observation_space: gym.Space | None = None
        self.action_space: gym.Space | None = None
        self._obs: SpecSpaces | None = None
        self._acts: SpecSpaces | None = None
        self.closed = False

    @property
    def connected(self) -> bool:
        return self._connection is not None

    # ------------------------------------------------------------------ server and world

    def start_server(self) -> str:
        """Make and start a new launcher (blocking until the server answers); returns its address.

        A server that refuses the connection because it is full, or refuses the token, raises
        :class:`RpcEnvError` at once.
        """
        from alchemy_gym.rpc.launchers import ServerRefused

        self.launcher = self.config.make_launcher(self.address)
        try:
            return self.launcher.start(timeout=self.config.connect_timeout)
        except ServerRefused as exc:
            raise RpcEnvError(str(exc)) from None  # the vector env names the sub-env itself

    async def connect(self) -> None:
        """Open the stream to the started server and create a world with a random seed."""
        from alchemy_gym.rpc.connection import AioTransport

        self._connection = AioTransport(
            self.launcher.address, timeout=self.config.request_timeout, token=self.launcher.token
        )
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        await self._create_world(self._episode_level(self.config.fixed_episode), seed)

    async def disconnect(self) -> None:
        """Leave and destroy the world (if the server still answers) and close the stream."""
        try:
            if self._connection is not None and self._world_name is not None:
                try:
                    await self._destroy_world()
                except Exception:
                    pass
        finally:
            self._world_name = None
            await self._drop_connection()

    def stop_server(self) -> None:
        """Stop what the launcher started (idempotent)."""
        if self.launcher is not None:
            self.launcher.close()

    def _episode_level(self, episode: int | None) -> str:
        if not self.config.evaluation:
            return find_level(self.config.level_name).name
        return f"{EVALUATION_PREFIX}/{0 if episode is None else episode}"

    async def _send(self, request):
        """Send one request; server-side errors → ValueError, a dead server → RpcEnvError."""
        if self.closed:
            raise RpcEnvError(f"{self._prefix()}the env is closed")
        if self._connection is None:
            raise self._no_server()
        try:
            return await self._connection.send(request)
        except dm_error.DmEnvRpcError as exc:
            if exc.code == _RESOURCE_EXHAUSTED:  # a server limit (worlds): not the request's fault
                raise RpcEnvError(
                    f"{self._prefix()}the dm_env_rpc server is full: it refused {type(request).__name__}: {exc.message}"
                ) from None
            raise ValueError(
                f"{self._prefix()}the dm_env_rpc server rejected {type(request).__name__}: {exc.message} "
                f"(code {exc.code})"
            ) from None
        except (RequestTimeout, StreamClosed, grpc.RpcError) as exc:
            full = self._refused_as_full(exc)
            if full is not None:
                await self._drop_connection()
                raise RpcEnvError(f"{self._prefix()}{full}") from None
            raise await self._dead(exc) from None

    def _refused_as_full(self, exc) -> str | None:
        """The message to raise if ``exc`` is the server refusing the stream (full, or the token), else None."""
        if isinstance(exc, StreamClosed):
            code, details = exc.code, exc.details
        elif isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
            code, details = exc.code(), exc.details()
        else:
            return None
        code = getattr(code, "name", code)
        if code == "UNAUTHENTICATED":
            details = f"UNAUTHENTICATED: {details}"
        if not is_refused(code, details):
            return None
        what = self.launcher.describe() if self.launcher is not None else "dm_env_rpc server"
        return f"the {what} refused the connection: {details}"

    def _prefix(self) -> str:
        return f"{self.label}: " if self.label else ""

    def _no_server(self) -> RpcEnvError:
        return RpcEnvError(f"{self._prefix()}the env has no server (a previous failure). {self.recovery}")

    async def _dead(self, exc) -> RpcEnvError:
        launcher = self.launcher
        if (
            isinstance(exc, StreamClosed)
            and exc.code is not None
            and (launcher is None or launcher.alive() is not False)
        ):
            # the server ended the stream itself (idle, made room, shutting down …): its own reason
            await self._drop_connection()
            what = launcher.describe() if launcher else "server"
            return RpcEnvError(
                f"{self._prefix()}the {what} closed the connection: {exc.code}: {exc.details}. {self.recovery}"
            )
        if isinstance(exc, RequestTimeout):
            detail = f"{exc}; request_timeout={self.config.request_timeout:g}"
        elif isinstance(exc, grpc.RpcError):
            detail = f"{exc.code().name}: {exc.details()}"
        else:
            detail = str(exc) or type(exc).__name__
        state = ""
        if launcher is not None and hasattr(launcher, "status"):
            state = f"; container state: {launcher.status()}"
        elif launcher is not None and launcher.alive() is False:
            state = "; the server process has exited"
        tail = launcher.log_tail() if launcher is not None else ""
        await self._drop_connection()
        what = launcher.describe() if launcher else "server"
        message = f"{self._prefix()}lost the {what} ({detail}{state}). {self.recovery}"
        if tail.strip():
            message += f"\n--- last lines of the server's log ---\n{tail.strip()}"
        return RpcEnvError(message)

    async def _create_world(self, level: str, seed: int) -> None:
        from dm_env_rpc.v1 import tensor_utils

        await self._destroy_world()
        config = self.config
        settings = {
            "seed": tensor_utils.pack_tensor(seed),
            "episodeId": tensor_utils.pack_tensor(0),
            "levelName": tensor_utils.pack_tensor(level),
        }
        if config.event_regex is not None:
            settings["EventSubscriptionRegex"] = tensor_utils.pack_tensor(config.event_regex)
        self._world_name = (await self._send(pb.CreateWorldRequest(settings=settings))).world_name
        join = {"width": tensor_utils.pack_tensor(config.width), "height": tensor_utils.pack_tensor(config.height)}
        specs = (await self._send(pb.JoinWorldRequest(world_name=self._world_name, settings=join))).specs
        self._world_level, self.world_seed, self._world_fresh = level, seed, True
        self._set_specs(specs)

    async def _destroy_world(self) -> None:
        if self._world_name is None or self._connection is None:
            self._world_name = None
            return
        name, self._world_name = self._world_name, None
        await self._send(pb.LeaveWorldRequest())
        await self._send(pb.DestroyWorldRequest(world_name=name))

    def _set_specs(self, specs) -> None:
        first = self.specs is None
        self.specs = specs
        unsupported = "warn" if first else "ignore"  # warn once per env, not at every new world
        obs = specs_to_spaces(
            specs.observations,
            include=self.config.observations,
            exclude=_NON_OBSERVATIONS,
            kind="observation",
            unsupported=unsupported,
        )
        acts = specs_to_spaces(specs.actions, kind="action", unsupported=unsupported)
        if not first and (obs.space != self.observation_space or acts.space != self.action_space):
            raise RpcEnvError(f"{self._prefix()}the server changed its specs between worlds; make a new env")
        self._obs = obs
        self._acts = acts
        self.observation_space = obs.space
        self.action_space = acts.space
        # a single discrete action (our server's): each value is checked and packed once
        discrete = acts.single is not None and isinstance(acts.space, gym.spaces.Discrete)
        self._packed_cache: dict | None = {} if discrete else None
        by_name = {spec.name: uid for uid, spec in specs.observations.items()}
        self._uid_names = {uid: spec.name for uid, spec in specs.observations.items()}
        extra = [by_name[n] for n in ("Score", "events", "reward", "discount") if n in by_name]
        if self.config.render_mode == "rgb_array" and "RGB_INTERLEAVED" in by_name:
            extra.append(by_name["RGB_INTERLEAVED"])
        self._requested_uids = sorted(set(obs.uids.values()) | set(extra))
        self._has_reward = "reward" in by_name

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:
                pass

    # ----------------------------------------------------------------------- reset

    def plan_reset(self, seed: int | None, options: dict[str, Any] | None, np_random: np.random.Generator):
        """Check a reset's arguments and decide it; returns ``(level, world_seed or None)`` for :meth:`reset`.

        ``np_random`` (already seeded with ``seed`` by the caller) draws the new world's seed
        when the world has to be recreated (a seed given, another evaluation episode).
        """
        config = self.config
        options = reset_options(options, fixed=config.evaluation, level=config.level_name)
        episode = check_episode_index(options["episode"], NUM_EVALUATION_EPISODES) if "episode" in options else None
        if self._connection is None:
            raise self._no_server()
        if seed is not None:
            self._cursor.restart()
        if config.evaluation:
            episode = self._cursor.take(config.fixed_episode if episode is None else episode)
            self.episode_index = episode
        level = self._episode_level(episode)
        if seed is not None or level != self._world_level or (config.evaluation and not self._world_fresh):
            return level, int(np_random.integers(0, 2**31 - 1))
        return level, None

    async def reset(self, level: str, world_seed: int | None):
        """Start an episode as planned by :meth:`plan_reset`; returns ``(obs, info)``."""
        if world_seed is not None:
            await self._create_world(level, world_seed)
        elif not self._world_fresh:
            await self._send(pb.ResetRequest())
        self._world_fresh = False
        response = await self._step_request({})
        obs, values = self._observation(response)
        self._last_score = float(values.get("Score", 0.0))
        self.needs_reset = False
        self.last_events = values.get("events")
        self._trial, self._trial_reward, self._return = -1, 0.0, 0.0
        self._follow_trials(self.last_events)
        return obs, self._info(step_info(self._trial, False, 0.0, 0.0, self._episode()))  # trial 0 (-1: no events)

    # ------------------------------------------------------------------------ step

    def pack_action(self, action) -> dict:
        """Check an action against the action space and pack it (``ValueError`` naming the key and bounds)."""
        cache = self._packed_cache
        if cache is not None and (type(action) is int or isinstance(action, np.integer)):  # not bool, not float
            packed = cache.get(action)
            if packed is None:
                packed = cache[int(action)] = self._pack_single(action)
            return packed
        if self._acts.single is not None:
            return self._pack_single(action)
        return self._pack_dict(action)

    def _pack_single(self, action) -> dict:
        acts = self._acts
        if isinstance(action, Mapping):
            if set(action) != {acts.single}:
                raise ValueError(
                    f"{self._prefix()}action keys {sorted(action)} are not allowed: the only action is {acts.single!r}"
                )
            action = action[acts.single]
        name = acts.single
        value = self._check(name, acts.spaces[name], action)
        return {acts.uids[name]: pack_value(acts.specs[name], value)}

    def _pack_dict(self, action) -> dict:
        acts = self._acts
        if not isinstance(action, Mapping):
            raise ValueError(
                f"{self._prefix()}the action must be a dict with keys among {sorted(acts.spaces)}, "
                f"got {type(action).__name__}"
            )
        check_action_keys(action, acts.spaces, self._prefix())
        packed = {}
        for name, value in action.items():
            value = self._check(name, acts.spaces[name], value)
            packed[acts.uids[name]] = pack_value(acts.specs[name], value)
        return packed

    def _check(self, name: str, space: gym.Space, value) -> np.ndarray:
        if not self.label:
            return check_action_value(name, space, value)
        try:
            return check_action_value(name, space, value)
        except ValueError as exc:
            raise ValueError(f"{self._prefix()}{exc}") from None

    async def step(self, packed: dict):
        """One env step with a packed action (``num_action_repeats`` server steps)."""
        total_reward = 0.0
        events: list = []
        terminated = truncated = False
        for _ in range(self.config.num_action_repeats):
            response = await self._step_request(packed)
            obs, values = self._observation(response)
            score = float(values["Score"]) if "Score" in values else None
            if self._has_reward and "reward" in values:
                total_reward += float(values["reward"])
            elif score is not None:
                total_reward += score - self._last_score
            if score is not None:
                self._last_score = score  # info["score"], whichever gives the reward
            events.extend(values.get("events", ()))
            state = response.state
            if state == _TERMINATED:
                terminated = True
                break
            if state == _INTERRUPTED:
                truncated = True
                break
        self.needs_reset = terminated or truncated
        self.last_events = events if "events" in values else None
        trial = self._trial
        self._trial_reward += total_reward
        self._return += total_reward
        info = step_info(trial, False, self._trial_reward, self._return, self._episode(), terminated)
        if self._follow_trials(self.last_events):
            info["trial_ended"] = np.array(True)
            self._trial_reward = 0.0
        return obs, total_reward, terminated, truncated, self._info(info)

    def _episode(self) -> int | None:
        return self.episode_index if self.config.evaluation else None

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        info.update(rpc_info(self.world_seed, self._last_score))
        return info

    def _follow_trials(self, events: list | None) -> bool:
        """Count the trials the world starts; whether one ended."""
        ended = False
        for event in events or ():
            name = event.name
            if name.endswith("/TrialEnded"):
                ended = True
            elif name.endswith("/TrialStarted"):
                self._trial += 1
        return ended

    def _step_request(self, actions: dict):
        return self._send(pb.StepRequest(actions=actions, requested_observations=self._requested_uids))

    def _observation(self, response):
        values: dict[str, Any] = {}
        names = self._uid_names
        for uid, tensor in response.observations.items():
            name = names.get(uid)
            if name == "events":
                if tensor.WhichOneof("payload") == "protos":
                    if self.config.decode_events:
                        values[name] = [decode_event(a) for a in tensor.protos.array]
                    else:
                        values[name] = [
                            WorldEvent(name=_event_name(a), detail=None, detail_type=a.type_url, raw=bytes(a.value))
                            for a in tensor.protos.array
                        ]
                continue
            values[name] = unpack_value(tensor)
        if "RGB_INTERLEAVED" in values:
            self.last_rgb = values["RGB_INTERLEAVED"]
        obs_spaces = self._obs
        if obs_spaces.single is not None:
            return values[obs_spaces.single], values
        return {name: values[name] for name in obs_spaces.spaces}, values


# ------------------------------------------------------------------------------- the env


class RpcAlchemyEnv(gym.Env):
    """Alchemy over dm_env_rpc: the Unity 3D env in Docker (default), a local build, or any server.

    Each env owns one server: a Docker container of ``image`` (default the Unity
    image ``gcr.io/deepmind-environments/alchemy:v1.0.0``), a local process
    (``binary=``), or an already running server (``address="host:port"``, never
    stopped by us). The world is created with the settings of dm_alchemy
    (``seed``, ``episodeId`` 0, ``levelName``, ``EventSubscriptionRegex``) and
    joined with ``width``/``height``.

    ## Spaces

    Derived from the specs the server sends (:mod:`alchemy_gym.rpc.spaces`):
    several observations give a ``Dict`` (Unity: ``RGB_INTERLEAVED``,
    ``ACCELERATION``, ``HAND_FORCE``, ``HAND_IS_HOLDING``, ``HAND_DISTANCE``,
    ``Score``; our symbolic server: ``symbolic_obs``, ``Score``,
    ``RGB_INTERLEAVED``), one gives its own space. ``events`` go to :attr:`last_events`,
    strings (Unity's ``LANGUAGE`` action) are left out with a warning. Unity's
    actions are a ``Dict`` of float64 scalars; a step may give any subset of
    keys (the Unity actions are sticky: missing keys keep their value). For a
    flat ``Box`` or a small discrete set use
    :class:`alchemy_gym.wrappers.rpc_actions.FlatRpcActions` /
    :class:`~alchemy_gym.wrappers.rpc_actions.DiscreteRpcActions`.

    ## Rewards and episode end

    The reward is the server's ``reward`` observation if it has one, else the
    change of ``Score``; with ``num_action_repeats`` > 1 the rewards of the
    repeats are summed (the loop stops at the episode's end).
    ``terminated`` when the server reports ``TERMINATED``, ``truncated`` on
    ``INTERRUPTED``.

    ## Info

    The same keys on ``reset`` and every step, 0-d numpy arrays of fixed dtypes
    (:mod:`alchemy_gym.envs.info`): the symbolic env's keys (``trial``, ``trial_ended`` from the
    world's ``TrialStarted`` / ``TrialEnded`` events; ``trial`` is -1 if the server sends none),
    then ``world_seed`` (int64) and ``score`` (float32). The world events of the last reset or
    step (all repeats) are :attr:`last_events` (a list of
    :class:`alchemy_gym.rpc.events.WorldEvent`; ``None`` when the server sends no events).

    ## Seeding

    ``reset(seed=S)`` recreates the world with a seed drawn from the env's
    ``np_random`` (so the same ``S`` gives the same episodes); ``reset()``
    starts the next episode of the current world. The evaluation level
    (``alchemy/evaluation_episodes``) plays ``alchemy/evaluation_episodes/i``
    after ``reset(options={"episode": i})`` and 0, 1, 2, … otherwise.

    ## Failures

    If the server dies (e.g. its container is killed), the next call raises
    :class:`RpcEnvError` with the container's state and log tail. Recover
    with ``env.restart()`` (a new server; then ``reset()``) or ``env.close()``
    and a new env. A server that stays connected but does not answer one
    request within ``request_timeout`` seconds (hung) is treated the same way:
    :class:`RpcEnvError` saying so, then ``env.restart()``. Start-up failures
    raise :class:`alchemy_gym.rpc.launchers.LaunchError` within ``connect_timeout``;
    a server that refuses the connection because it is full (all its connections or
    worlds in use) raises :class:`RpcEnvError` at once, with the server's limit.

    ## Arguments

    Keyword arguments (:class:`RpcEnvConfig`):

    | argument | default | meaning |
    |---|---|---|
    | level_name | the standard task | a 3D level (``alchemy/...``) or ``alchemy/evaluation_episodes[/i]`` |
    | image | the Unity image | Docker image to run |
    | address | None | ``host:port`` of a running server (no Docker; the vector env: one, or one per sub-env) |
    | binary | None | a local server program, or a dm_alchemy Unity build directory |
    | token | None | the server's token (default: the launcher makes one for a server it starts that checks tokens) |
    | binary_args | () | its arguments (``{port}`` is replaced by the port; Unity's by default) |
    | environment | None | environment variables for the container / process |
    | width | 96 | ``RGB_INTERLEAVED`` width |
    | height | 72 | ``RGB_INTERLEAVED`` height |
    | num_action_repeats | 1 | server steps per ``step()`` |
    | render_mode | None | ``'rgb_array'`` returns the last ``RGB_INTERLEAVED`` |
    | connect_timeout | 60.0 | seconds to wait for the server |
    | request_timeout | 300.0 | seconds one request may wait for its answer (None: forever) |
    | observations | None | names of the observations to request (default: all supported) |
    | event_regex | 'DeepMind/.*' | ``EventSubscriptionRegex`` (None: no subscription) |
    | decode_events | True | decode events into dicts (else name and raw bytes only) |
    | docker_kwargs | None | more ``DockerLauncher`` arguments (``port``, ``pull``, ``client`` …) |

    ## Version history

    * v0: initial release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, level_name: str, **settings: Any) -> None:
        # --- validate everything before anything starts
        config = RpcEnvConfig.parse(level_name, **settings)
        address = config.address
        if address is not None and not isinstance(address, str):
            raise ValueError(f"address must be 'host:port', got {address!r} (a list is for the vector env)")
        from alchemy_gym.rpc.connection import PrivateLoop

        self._config = config
        self.level_name = level_name
        self.render_mode = config.render_mode
        self._loop = PrivateLoop()  # runs only inside this env's calls
        self._client = RpcWorldClient(config)
        self._closed = False
        # an env dropped without close() still closes its stream and loop (the launcher has its own finalizer)
        self._finalizer = weakref.finalize(self, _close_quietly, self._loop, self._client)
        self._start()

    # read-only views of the settings and of the world
    settings = property(lambda self: self._config, doc="the env's settings (an :class:`RpcEnvConfig`)")
    width = property(lambda self: self._config.width)
    height = property(lambda self: self._config.height)
    num_action_repeats = property(lambda self: self._config.num_action_repeats)
    connect_timeout = property(lambda self: self._config.connect_timeout)
    request_timeout = property(lambda self: self._config.request_timeout)
    event_regex = property(lambda self: self._config.event_regex)
    decode_events = property(lambda self: self._config.decode_events)
    launcher = property(lambda self: self._client.launcher, doc="the launcher of the current server")
    world_seed = property(lambda self: self._client.world_seed, doc="the seed of the current world")
    episode_index = property(lambda self: self._client.episode_index, doc="the evaluation episode being played")
    last_events = property(
        lambda self: self._client.last_events,
        doc="the world events of the last reset or step (``None`` when the server sends no events)",
    )

    def _start(self) -> None:
        client = self._client
        try:
            client.start_server()
            self._loop.run(client.connect())
        except BaseException:
            self._shutdown()
            raise
        self.observation_space = client.observation_space
        self.action_space = client.action_space

    # ----------------------------------------------------------------------- gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = check_seed(seed, high=None)  # any non-negative int (Gymnasium's np_random); info["world_seed"] too
        if self._closed:
            raise RpcEnvError("the env is closed")
        super().reset(seed=seed)
        level, world_seed = self._client.plan_reset(seed, options, self.np_random)
        return self._loop.run(self._client.reset(level, world_seed))

    def step(self, action):
        client = self._client
        if self._closed:
            raise RpcEnvError("the env is closed")
        if client.needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        packed = client.pack_action(action)
        return self._loop.run(client.step(packed))

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        rgb = self._client.last_rgb
        return None if rgb is None else rgb.copy()

    def close(self) -> None:
        """Leave and destroy the world, close the connection and stop the server (idempotent)."""
        if self._closed:
            return
        self._shutdown()
        self._closed = True
        self._client.closed = True
        self._finalizer()  # closes the loop

    def restart(self) -> None:
        """Start a new server after a failure (or at will); call ``reset()`` next."""
        if self._closed:
            raise RpcEnvError("the env is closed: make a new env")
        self._shutdown()
        self._client.needs_reset = True
        self._start()

    # -------------------------------------------------------------------- internals

    def _shutdown(self) -> None:
        try:
            if not self._loop.closed:
                self._loop.run(self._client.disconnect())
        finally:
            self._client.stop_server()


def _close_quietly(loop, client: RpcWorldClient) -> None:
    """Close the client's stream and the loop (at close, garbage collection or exit); never raises."""
    try:
        if not loop.closed:
            loop.run(client._drop_connection())
    except Exception:
        pass
    try:
        loop.close()
    except Exception:
        pass


def _event_name(packed) -> str:
    from alchemy_gym.rpc.events import messages

    if packed.type_url.endswith("deepmind.dmworlds.WorldEvent"):
        event = messages().WorldEvent()
        event.ParseFromString(packed.value)
        return event.name
    return packed.type_url.rpartition("/")[2]


def _rpc_levels():
    from alchemy_gym.levels import levels

    return [lv for lv in levels() if lv.rpc_id and not lv.is_evaluation]


RpcAlchemyEnv.__init__.__signature__ = RpcEnvConfig.signature(positional=("level_name",))
