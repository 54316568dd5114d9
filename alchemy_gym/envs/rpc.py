"""The 3D Alchemy env (or any dm_env_rpc Alchemy server) as a Gymnasium env."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from alchemy_gym.envs.options import episode_option
from alchemy_gym.levels import EVALUATION_PREFIX, NUM_EVALUATION_EPISODES, find_level, parse_evaluation_name
from alchemy_gym.rpc import DEFAULT_IMAGE
from alchemy_gym.rpc.connection import RequestTimeout
from alchemy_gym.rpc.events import WorldEvent, decode_event
from alchemy_gym.rpc.spaces import check_action_value, pack_value, specs_to_spaces, unpack_value

try:  # the ``rpc`` extra
    import grpc
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import error as dm_error
except ImportError:  # pragma: no cover - reported when an env is made
    grpc = pb = dm_error = None

#: Observations that feed the reward / episode end / info rather than the observation space.
_NON_OBSERVATIONS = ("events", "reward", "discount")


class RpcEnvError(RuntimeError):
    """The dm_env_rpc server failed or went away (the message says how to recover)."""


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
    ``RGB_INTERLEAVED``), one gives its own space. ``events`` go to ``info``,
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

    ``world_seed`` (after a reset), ``score``, ``events`` (a list of
    :class:`alchemy_gym.rpc.events.WorldEvent` of all repeats, when the server
    sends events), ``episode`` (evaluation level).

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
    raise :class:`alchemy_gym.rpc.launchers.LaunchError` within ``connect_timeout``.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | level_name | — | a 3D level (``alchemy/...``) or ``alchemy/evaluation_episodes[/i]`` |
    | image | the Unity image | Docker image to run |
    | address | None | ``host:port`` of a running server (no Docker) |
    | binary | None | a local server program, or a dm_alchemy Unity build directory |
    | binary_args | () | its arguments (``{port}`` is replaced by the port; Unity's by default) |
    | environment | None | environment variables for the container / process |
    | width, height | 96, 72 | ``RGB_INTERLEAVED`` size |
    | num_action_repeats | 1 | server steps per ``step()`` |
    | render_mode | None | ``"rgb_array"`` returns the last ``RGB_INTERLEAVED`` |
    | connect_timeout | 60 | seconds to wait for the server |
    | request_timeout | 300 | seconds one request may wait for its answer (None: forever) |
    | observations | None | names of the observations to request (default: all supported) |
    | event_regex | ``"DeepMind/.*"`` | ``EventSubscriptionRegex`` (None: no subscription) |
    | decode_events | True | decode events into dicts (else name and raw bytes only) |
    | docker_kwargs | None | more ``DockerLauncher`` arguments (``port``, ``pull``, ``client`` …) |

    ## Version history

    * v0: initial release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        level_name: str,
        *,
        image: str = DEFAULT_IMAGE,
        address: str | None = None,
        binary: str | None = None,
        binary_args: Sequence[str] | None = (),
        environment: Mapping[str, str] | None = None,
        width: int = 96,
        height: int = 72,
        num_action_repeats: int = 1,
        render_mode: str | None = None,
        connect_timeout: float = 60.0,
        request_timeout: float | None = 300.0,
        observations: Sequence[str] | None = None,
        event_regex: str | None = "DeepMind/.*",
        decode_events: bool = True,
        docker_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if pb is None:
            raise ImportError("RpcAlchemyEnv needs the rpc extra: pip install 'alchemy-gym[rpc]'")
        # --- validate everything before anything starts
        level = find_level(level_name)
        if level.rpc_id is None:
            raise ValueError(
                f"level {level_name!r} has no 3D version: the 3D levels are "
                + ", ".join(f"{lv.name}" for lv in _rpc_levels())
                + f" and {EVALUATION_PREFIX}/0..{NUM_EVALUATION_EPISODES - 1}"
            )
        self.level_name = level_name
        self._evaluation = level.name == EVALUATION_PREFIX
        self._fixed_episode = parse_evaluation_name(level_name) if self._evaluation else None
        for name, value in (("width", width), ("height", height), ("num_action_repeats", num_action_repeats)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported: allowed None or 'rgb_array'")
        if not isinstance(connect_timeout, numbers.Real) or connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}")
        if request_timeout is not None and (
            isinstance(request_timeout, bool) or not isinstance(request_timeout, numbers.Real) or request_timeout <= 0
        ):
            raise ValueError(f"request_timeout must be a positive number of seconds or None, got {request_timeout!r}")
        if sum(x is not None for x in (address, binary)) > 1:
            raise ValueError("pass at most one of address= and binary= (neither: run the Docker image)")
        self.width, self.height = int(width), int(height)
        self.num_action_repeats = int(num_action_repeats)
        self.render_mode = render_mode
        self.connect_timeout = float(connect_timeout)
        self.request_timeout = None if request_timeout is None else float(request_timeout)
        self._requested_names = None if observations is None else list(observations)
        self.event_regex = event_regex
        self.decode_events = bool(decode_events)
        self._launcher_args = dict(
            image=image,
            address=address,
            binary=binary,
            binary_args=binary_args,
            environment=environment,
            docker_kwargs=dict(docker_kwargs or {}),
        )
        self.launcher = None
        self._channel = None
        self._connection = None
        self._world_name: str | None = None
        self._world_level: str | None = None
        self._world_fresh = False
        self.world_seed: int | None = None
        self._next_episode = 0
        self.episode_index: int | None = None
        self._needs_reset = True
        self._last_score = 0.0
        self._last_rgb: np.ndarray | None = None
        self._closed = False
        self._start()

    # ------------------------------------------------------------------ server and world

    def _make_launcher(self):
        from alchemy_gym.rpc import launchers

        args = self._launcher_args
        if args["address"] is not None:
            return launchers.AddressLauncher(args["address"])
        if args["binary"] is not None:
            binary_args = args["binary_args"]
            return launchers.LocalBinaryLauncher(
                args["binary"],
                None if binary_args is None else list(binary_args) or None,
                environment=args["environment"],
            )
        return launchers.DockerLauncher(args["image"], environment=args["environment"], **args["docker_kwargs"])

    def _start(self) -> None:
        from alchemy_gym.rpc import launchers
        from alchemy_gym.rpc.connection import RpcConnection

        self.launcher = self._make_launcher()
        try:
            address = self.launcher.start(timeout=self.connect_timeout)
            self._channel = launchers.open_channel(address)
            self._connection = RpcConnection(self._channel, timeout=self.request_timeout)
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
            level = self._episode_level(self._fixed_episode if self._evaluation else None)
            self._create_world(level, seed)
        except BaseException:
            self._shutdown()
            raise

    def _episode_level(self, episode: int | None) -> str:
        if not self._evaluation:
            return find_level(self.level_name).name
        return f"{EVALUATION_PREFIX}/{0 if episode is None else episode}"

    def _send(self, request):
        """Send one request; server-side errors → ValueError, a dead server → RpcEnvError."""
        if self._closed:
            raise RpcEnvError("the env is closed")
        if self._connection is None:
            raise RpcEnvError("the env has no server (a previous failure): call env.restart() or make a new env")
        try:
            return self._connection.send(request)
        except dm_error.DmEnvRpcError as exc:
            raise ValueError(
                f"the dm_env_rpc server rejected {type(request).__name__}: {exc.message} (code {exc.code})"
            ) from None
        except RequestTimeout as exc:
            raise self._dead(exc) from None
        except (grpc.RpcError, StopIteration) as exc:
            raise self._dead(exc) from None

    def _dead(self, exc) -> RpcEnvError:
        if isinstance(exc, RequestTimeout):
            detail = f"{exc}; request_timeout={self.request_timeout:g}"
        elif isinstance(exc, grpc.RpcError):
            detail = f"{exc.code().name}: {exc.details()}"
        else:
            detail = type(exc).__name__
        launcher = self.launcher
        state = ""
        if launcher is not None and hasattr(launcher, "status"):
            state = f"; container state: {launcher.status()}"
        elif launcher is not None and launcher.alive() is False:
            state = "; the server process has exited"
        tail = launcher.log_tail() if launcher is not None else ""
        self._drop_connection()
        message = (
            f"lost the {launcher.describe() if launcher else 'server'} ({detail}{state}). "
            "Recover with env.restart() (starts a new server; then call reset()) or env.close() and make a new env."
        )
        if tail.strip():
            message += f"\n--- last lines of the server's log ---\n{tail.strip()}"
        return RpcEnvError(message)

    def _create_world(self, level: str, seed: int) -> None:
        from dm_env_rpc.v1 import tensor_utils

        self._destroy_world()
        settings = {
            "seed": tensor_utils.pack_tensor(seed),
            "episodeId": tensor_utils.pack_tensor(0),
            "levelName": tensor_utils.pack_tensor(level),
        }
        if self.event_regex is not None:
            settings["EventSubscriptionRegex"] = tensor_utils.pack_tensor(self.event_regex)
        self._world_name = self._send(pb.CreateWorldRequest(settings=settings)).world_name
        join = {"width": tensor_utils.pack_tensor(self.width), "height": tensor_utils.pack_tensor(self.height)}
        specs = self._send(pb.JoinWorldRequest(world_name=self._world_name, settings=join)).specs
        self._world_level, self.world_seed, self._world_fresh = level, seed, True
        self._set_specs(specs)

    def _destroy_world(self) -> None:
        if self._world_name is None or self._connection is None:
            self._world_name = None
            return
        name, self._world_name = self._world_name, None
        self._send(pb.LeaveWorldRequest())
        self._send(pb.DestroyWorldRequest(world_name=name))

    def _set_specs(self, specs) -> None:
        first = getattr(self, "_specs", None) is None
        self._specs = specs
        unsupported = "warn" if first else "ignore"  # warn once per env, not at every new world
        obs = specs_to_spaces(
            specs.observations,
            include=self._requested_names,
            exclude=_NON_OBSERVATIONS,
            kind="observation",
            unsupported=unsupported,
        )
        acts = specs_to_spaces(specs.actions, kind="action", unsupported=unsupported)
        if not first and (obs.space != self.observation_space or acts.space != self.action_space):
            raise RpcEnvError("the server changed its specs between worlds; make a new env")
        self._obs = obs
        self._acts = acts
        self.observation_space = obs.space
        self.action_space = acts.space
        by_name = {spec.name: uid for uid, spec in specs.observations.items()}
        self._uid_names = {uid: spec.name for uid, spec in specs.observations.items()}
        extra = [by_name[n] for n in ("Score", "events", "reward", "discount") if n in by_name]
        if self.render_mode == "rgb_array" and "RGB_INTERLEAVED" in by_name:
            extra.append(by_name["RGB_INTERLEAVED"])
        self._requested_uids = sorted(set(obs.uids.values()) | set(extra))
        self._has_reward = "reward" in by_name
        self._has_score = "Score" in by_name

    # ----------------------------------------------------------------------- gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        super().reset(seed=seed)
        episode = episode_option(options, fixed=self._evaluation, level=self.level_name)
        if seed is not None:
            self._next_episode = 0
        if self._evaluation:
            if episode is None:
                episode = self._fixed_episode if self._fixed_episode is not None else self._next_episode
            self._next_episode = (episode + 1) % NUM_EVALUATION_EPISODES
            self.episode_index = episode
        level = self._episode_level(episode)
        if self._connection is None:
            raise RpcEnvError("the env lost its server: call env.restart() or make a new env")
        if seed is not None or level != self._world_level or (self._evaluation and not self._world_fresh):
            world_seed = int(self.np_random.integers(0, 2**31 - 1))
            self._create_world(level, world_seed)
        elif not self._world_fresh:
            self._send(pb.ResetRequest())
        self._world_fresh = False
        response = self._step_request({})
        obs, values = self._observation(response)
        self._last_score = float(values.get("Score", 0.0))
        self._needs_reset = False
        info = {"world_seed": self.world_seed, "score": self._last_score}
        if self._evaluation:
            info["episode"] = self.episode_index
        if "events" in values:
            info["events"] = values["events"]
        return obs, info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        packed = self._pack_action(action)
        total_reward = 0.0
        events: list = []
        terminated = truncated = False
        for _ in range(self.num_action_repeats):
            response = self._step_request(packed)
            obs, values = self._observation(response)
            if self._has_reward and "reward" in values:
                total_reward += float(values["reward"])
            elif "Score" in values:
                score = float(values["Score"])
                total_reward += score - self._last_score
                self._last_score = score
            events.extend(values.get("events", ()))
            if response.state == pb.EnvironmentStateType.TERMINATED:
                terminated = True
                break
            if response.state == pb.EnvironmentStateType.INTERRUPTED:
                truncated = True
                break
        self._needs_reset = terminated or truncated
        info: dict[str, Any] = {"score": self._last_score}
        if "events" in values:
            info["events"] = events
        if self._evaluation:
            info["episode"] = self.episode_index
        return obs, total_reward, terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        return None if self._last_rgb is None else self._last_rgb.copy()

    def close(self) -> None:
        """Leave and destroy the world, close the connection and stop the server (idempotent)."""
        if self._closed:
            return
        self._shutdown()
        self._closed = True

    def restart(self) -> None:
        """Start a new server after a failure (or at will); call ``reset()`` next."""
        if self._closed:
            raise RpcEnvError("the env is closed: make a new env")
        self._shutdown()
        self._needs_reset = True
        self._start()

    # -------------------------------------------------------------------- internals

    def _shutdown(self) -> None:
        try:
            if self._connection is not None and self._world_name is not None:
                try:
                    self._destroy_world()
                except Exception:
                    pass
        finally:
            self._world_name = None
            self._drop_connection()
            if self.launcher is not None:
                self.launcher.close()

    def _drop_connection(self) -> None:
        connection, channel = self._connection, self._channel
        self._connection = self._channel = None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass
        if channel is not None:
            channel.close()

    def _pack_action(self, action) -> dict:
        acts = self._acts
        if acts.single is not None:
            if isinstance(action, Mapping):
                if set(action) != {acts.single}:
                    raise ValueError(
                        f"action keys {sorted(action)} are not allowed: the only action is {acts.single!r}"
                    )
                action = action[acts.single]
            name = acts.single
            value = check_action_value(name, acts.spaces[name], action)
            return {acts.uids[name]: pack_value(acts.specs[name], value)}
        if not isinstance(action, Mapping):
            raise ValueError(
                f"the action must be a dict with keys among {sorted(acts.spaces)}, got {type(action).__name__}"
            )
        unknown = sorted(set(action) - set(acts.spaces))
        if unknown:
            raise ValueError(f"unknown action keys {unknown}: allowed {sorted(acts.spaces)}")
        packed = {}
        for name, value in action.items():
            value = check_action_value(name, acts.spaces[name], value)
            packed[acts.uids[name]] = pack_value(acts.specs[name], value)
        return packed

    def _step_request(self, actions: dict):
        return self._send(pb.StepRequest(actions=actions, requested_observations=self._requested_uids))

    def _observation(self, response):
        values: dict[str, Any] = {}
        names = self._uid_names
        for uid, tensor in response.observations.items():
            name = names.get(uid)
            if name == "events":
                if tensor.WhichOneof("payload") == "protos":
                    if self.decode_events:
                        values[name] = [decode_event(a) for a in tensor.protos.array]
                    else:
                        values[name] = [
                            WorldEvent(name=_event_name(a), detail=None, detail_type=a.type_url, raw=bytes(a.value))
                            for a in tensor.protos.array
                        ]
                continue
            values[name] = unpack_value(tensor)
        if "RGB_INTERLEAVED" in values:
            self._last_rgb = values["RGB_INTERLEAVED"]
        obs_spaces = self._obs
        if obs_spaces.single is not None:
            return values[obs_spaces.single], values
        return {name: values[name] for name in obs_spaces.spaces}, values


def _event_name(packed) -> str:
    from alchemy_gym.rpc.events import messages

    if packed.type_url.endswith("deepmind.dmworlds.WorldEvent"):
        event = messages().WorldEvent()
        event.ParseFromString(packed.value)
        return event.name
    return packed.type_url.rpartition("/")[2]


def _rpc_levels():
    from alchemy_gym.levels import levels

    return [lv for lv in levels() if lv.rpc_id and lv.name != EVALUATION_PREFIX]
