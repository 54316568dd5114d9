"""A native vector env of the 3D Alchemy envs: N dm_env_rpc servers stepped concurrently from one process.

``gymnasium.make_vec("Alchemy/Standard-v0", num_envs=N, vectorization_mode="vector_entry_point", ...)``
builds it for any 3D ID. Each sub-env has its own server and world, exactly as N
:class:`~alchemy_gym.envs.rpc.RpcAlchemyEnv` would (one Docker container or local process each, or
``address=``), but one ``step()`` sends all N requests at once on ``grpc.aio`` streams driven by
an event loop the vector env owns, and gathers the answers: the gRPC cost of a round trip is
shared by the N requests in flight, so N sub-envs step several times faster than N envs in turn.
"""

from __future__ import annotations

import asyncio
import inspect
import numbers
import weakref
from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from alchemy_gym.core.checks import check_count
from alchemy_gym.core.episodes import episode_indices, reset_options, sub_env_seeds
from alchemy_gym.envs.gymnasium_version import AutoresetMode, require_vector_api
from alchemy_gym.envs.rpc import RpcEnvConfig, RpcEnvError, RpcWorldClient
from alchemy_gym.levels import NUM_EVALUATION_EPISODES
from alchemy_gym.rpc.spaces import check_action_keys

_NEXT_STEP = AutoresetMode.NEXT_STEP

_RECOVERY = (
    "Recover with envs.restart() (new servers for the sub-envs that lost theirs; then call reset()) "
    "or envs.close() and make a new vector env."
)


class RpcAlchemyVectorEnv(VectorEnv):
    """``num_envs`` 3D Alchemy envs, each with its own dm_env_rpc server, stepped concurrently.

    Takes the arguments of :class:`~alchemy_gym.envs.rpc.RpcAlchemyEnv`; sub-env ``i`` is that env
    with server ``i``:

    * ``image=`` (default, the Unity image): one Docker container per sub-env;
    * ``binary=``: one local server process per sub-env;
    * ``address="host:port"``: one stream (and world) per sub-env on that one server; or a list
      of ``num_envs`` addresses, one per sub-env.

    Servers are started in parallel (``connect_timeout`` applies to each).

    ## Spaces

    The single env's spaces come from the servers' specs (as in ``RpcAlchemyEnv``; every server
    must send the same), batched with ``gymnasium.vector.utils.batch_space``: the symbolic server's
    ``Discrete(40)`` action becomes ``MultiDiscrete([40] * N)``, Unity's ``Dict`` of float scalars a
    ``Dict`` of ``(N,)`` boxes (a step may give any subset of its keys: Unity actions are sticky),
    observations gain a leading ``N`` axis.

    ## Autoreset and seeding

    Next-step autoreset (``metadata["autoreset_mode"]``), as the symbolic vector env and Gymnasium's
    ``SyncVectorEnv``: the step after a sub-env's episode ended ignores its action, resets it and
    returns its first observation with reward 0 and the reset's info. ``reset(seed=S)`` seeds
    sub-env ``i`` with ``S + i`` (or ``seed=[s_0, …]``), so sub-env ``i`` plays exactly the
    episodes of ``RpcAlchemyEnv.reset(seed=S + i)``; ``reset()`` continues every world's stream.
    On the evaluation level sub-env ``i`` plays episodes ``i, i + N, i + 2N, …`` (as the symbolic
    vector env); ``reset(options={"episode": e})`` gives every sub-env episode ``e``,
    ``{"episode": [e_0, …, e_{N-1}]}`` one each.

    ## Infos

    The single env's infos in Gymnasium's vector layout (``info["score"]`` a ``(num_envs,)``
    float32 array, with the mask ``info["_score"]``, …), as ``SyncVectorEnv`` gives them: the same
    keys on every reset and step. Each sub-env's world events of the last call are
    :attr:`last_events`.

    ## Failures

    Actions and options are checked for every sub-env before any request is sent. If a server
    dies or hangs (``request_timeout``), the step raises :class:`~alchemy_gym.envs.rpc.RpcEnvError`
    naming the sub-env, with the container's state or the process's exit and its log tail; every
    sub-env then needs ``reset()`` (after ``restart()``, which starts new servers for the
    sub-envs that lost theirs). ``close()`` destroys the worlds and stops every server, container
    and stream (idempotent; also at garbage collection).
    """

    metadata = {"autoreset_mode": _NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, num_envs: int = 1, level_name: str = RpcEnvConfig.level_name, **settings: Any) -> None:
        # --- everything is checked before any server starts
        num_envs = check_count("num_envs", num_envs)
        config = RpcEnvConfig.parse(level_name, **settings)
        require_vector_api("the native 3D vector env (RpcAlchemyVectorEnv)")
        addresses = _addresses(config.address, num_envs)
        from alchemy_gym.rpc.connection import PrivateLoop

        self.num_envs = num_envs
        self.level_name = level_name
        self.render_mode = config.render_mode
        self._config = config
        self._loop = PrivateLoop()
        self._clients = [
            RpcWorldClient(
                config,
                addresses[i],
                label=f"sub-env {i}",
                recovery=_RECOVERY,
                first_episode=i % NUM_EVALUATION_EPISODES,
                episode_stride=num_envs,
            )
            for i in range(num_envs)
        ]
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)
        self._needs_reset = True
        self._finalizer = weakref.finalize(self, _finalize, self._loop, self._clients)
        try:
            self._start(range(num_envs))
        except BaseException:
            self._finalizer()
            self.closed = True
            raise
        first = self._clients[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    # ------------------------------------------------------------------------- servers

    def _start(self, indices) -> None:
        """Start the servers of ``indices`` in parallel, then connect to them and create their worlds."""
        clients = [self._clients[i] for i in indices]
        if len(clients) == 1:
            clients[0].start_server()
        else:
            with futures.ThreadPoolExecutor(
                max_workers=min(len(clients), 16), thread_name_prefix="alchemy-start"
            ) as pool:
                results = list(pool.map(_try_start, clients))
            failed = [(c, exc) for c, exc in zip(clients, results) if exc is not None]
            if failed:
                client, exc = failed[0]
                others = ", ".join(c.label for c, _ in failed[1:])
                if len(exc.args) == 1 and isinstance(exc.args[0], str):  # name the sub-env in the message
                    exc.args = (f"{client.label}: {exc.args[0]}" + (f"\n(also failed: {others})" if others else ""),)
                raise exc
        self._run_all([c.connect() for c in clients])
        reference = self._clients[0] if self._clients[0].specs is not None else clients[0]
        for client in clients:
            if (client.observation_space, client.action_space) != (reference.observation_space, reference.action_space):
                raise RpcEnvError(
                    f"{client.label}'s server sends other specs than {reference.label}'s: "
                    f"observations {client.observation_space} vs {reference.observation_space}, "
                    f"actions {client.action_space} vs {reference.action_space}"
                )

    def _run_all(self, coroutines: list) -> list:
        """Run the coroutines concurrently; all finish, then the first failure (if any) is raised."""

        async def gather():  # made on the loop: asyncio.gather outside it would pick another loop
            if len(coroutines) == 1:  # no task needed
                try:
                    return [await coroutines[0]]
                except Exception as exc:
                    return [exc]
            return await asyncio.gather(*coroutines, return_exceptions=True)

        results = self._loop.run(gather())
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            return results
        lost = [e for e in errors if isinstance(e, RpcEnvError)]
        first = lost[0] if lost else errors[0]
        if len(errors) > 1 and isinstance(first, (RpcEnvError, ValueError)):
            first.args = (f"{first.args[0]}\n({len(errors) - 1} more sub-env(s) failed in the same call)",)
        try:
            raise first
        finally:  # no reference cycle through this frame: the failed streams are freed at once
            results = errors = lost = first = None

    def restart(self) -> None:
        """Start new servers for the sub-envs that lost theirs (or all, if none did); call ``reset()`` next."""
        if self.closed:
            raise RpcEnvError("the vector env is closed: make a new one")
        lost = [i for i, c in enumerate(self._clients) if not c.connected] or list(range(self.num_envs))
        self._needs_reset = True
        self._run_all([self._clients[i].disconnect() for i in lost])
        for i in lost:
            self._clients[i].stop_server()
            self._clients[i].needs_reset = True
        self._start(lost)

    # ----------------------------------------------------------------------- gym API

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-env (``seed + i``, or a list of seeds); returns batched ``(obs, info)``."""
        if self.closed:
            raise RpcEnvError("the vector env is closed")
        n = self.num_envs
        seeds = sub_env_seeds(seed, n, high=None)  # Gymnasium's seeding, as the single 3D env
        per_env_options = self._episode_options(options)
        if isinstance(seed, numbers.Integral):
            super().reset(seed=int(seed))
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i], _ = seeding.np_random(s)
        plans = [
            client.plan_reset(seeds[i], per_env_options[i], self._rng(i)) for i, client in enumerate(self._clients)
        ]
        self._needs_reset = True
        results = self._run_all([client.reset(*plan) for client, plan in zip(self._clients, plans)])
        self._autoreset[:] = False
        self._needs_reset = False
        infos: dict[str, Any] = {}
        for i, (_, info) in enumerate(results):
            infos = self._add_info(infos, info, i)
        return self._batch([obs for obs, _ in results]), infos

    def step(self, actions):
        """Step every sub-env at once (those whose episode ended are reset instead)."""
        if self.closed:
            raise RpcEnvError("the vector env is closed")
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after a failed call)")
        per_env = self._split_actions(actions)
        clients, autoreset = self._clients, self._autoreset
        packed = [client.pack_action(a) for client, a in zip(clients, per_env)]  # all checked before sending
        plans = {i: clients[i].plan_reset(None, None, self._rng(i)) for i in np.flatnonzero(autoreset).tolist()}
        coroutines = [
            clients[i].reset(*plans[i]) if i in plans else clients[i].step(packed[i]) for i in range(self.num_envs)
        ]
        self._needs_reset = True
        results = self._run_all(coroutines)
        self._needs_reset = False
        n = self.num_envs
        observations = []
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        infos: dict[str, Any] = {}
        for i, result in enumerate(results):
            if i in plans:
                obs, info = result
            else:
                obs, rewards[i], terminated[i], truncated[i], info = result
            observations.append(obs)
            infos = self._add_info(infos, info, i)
        self._autoreset = terminated | truncated
        return self._batch(observations), rewards, terminated, truncated, infos

    @property
    def settings(self) -> RpcEnvConfig:
        """The settings every sub-env was made with (read-only)."""
        return self._config

    @property
    def last_events(self) -> list[list | None]:
        """Each sub-env's world events of the last reset or step (its reset's, after an autoreset; ``None``
        for a sub-env whose server sends no events)."""
        return [client.last_events for client in self._clients]

    def render(self) -> tuple[np.ndarray | None, ...] | None:
        """The last ``RGB_INTERLEAVED`` of every sub-env (with ``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            return None
        return tuple(None if c.last_rgb is None else c.last_rgb.copy() for c in self._clients)

    def close_extras(self, **kwargs: Any) -> None:
        """Destroy the worlds, close the streams and the loop, stop every server (idempotent)."""
        if hasattr(self, "_finalizer"):  # not when __init__ failed before making it
            self._finalizer()

    # -------------------------------------------------------------------- internals

    def _rng(self, i: int) -> np.random.Generator:
        if self._rngs[i] is None:
            self._rngs[i], _ = seeding.np_random()
        return self._rngs[i]

    def _batch(self, observations: list):
        """The sub-envs' observations stacked along a new first axis (as ``batch_space`` describes them)."""
        space = self.single_observation_space
        if isinstance(space, spaces.Box):
            return np.stack(observations)
        if isinstance(space, spaces.Dict) and all(isinstance(s, spaces.Box) for s in space.spaces.values()):
            return {key: np.stack([obs[key] for obs in observations]) for key in space.spaces}
        return concatenate(space, observations, create_empty_array(space, self.num_envs, fn=np.empty))

    def _episode_options(self, options) -> list[dict[str, int] | None]:
        n = self.num_envs
        options = reset_options(options, fixed=self._config.evaluation, level=self.level_name)
        if "episode" not in options:
            return [None] * n
        return [{"episode": int(e)} for e in episode_indices(options["episode"], n, NUM_EVALUATION_EPISODES)]

    def _split_actions(self, actions) -> list:
        """Per-sub-env actions from a batch (shape and keys checked here, values by each sub-env)."""
        n = self.num_envs
        space = self.single_action_space
        if isinstance(space, spaces.Dict):
            if not isinstance(actions, Mapping):
                raise ValueError(
                    f"actions must be a dict of arrays of shape ({n}, ...) with keys among {sorted(space.spaces)}, "
                    f"got {type(actions).__name__}"
                )
            check_action_keys(actions, space.spaces)
            columns = {key: self._column(key, value, space[key]) for key, value in actions.items()}
            return [{key: column[i] for key, column in columns.items()} for i in range(n)]
        if isinstance(actions, Mapping):  # the only action, by name
            return [
                dict(zip(actions, values)) for values in zip(*(self._column(k, v, space) for k, v in actions.items()))
            ]
        return list(self._column("actions", actions, space))

    def _column(self, name: str, value, space: spaces.Space) -> np.ndarray:
        n = self.num_envs
        shape = (n, *(space.shape or ()))
        array = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if array.dtype == object or array.shape != shape:
            what = "" if name == "actions" else f"action {name!r}: "
            raise ValueError(
                f"{what}expected an array of shape {shape} (one value per sub-env of {space}), "
                f"got {array.dtype} array of shape {array.shape}"
            )
        return array


# ------------------------------------------------------------------------------ helpers


def _addresses(address, num_envs: int) -> list[str | None]:
    if address is None:
        return [None] * num_envs
    if isinstance(address, str):
        return [address] * num_envs
    if isinstance(address, Sequence) and all(isinstance(a, str) for a in address):
        if len(address) != num_envs:
            raise ValueError(f"address lists {len(address)} servers: give one per sub-env ({num_envs}) or one for all")
        return list(address)
    raise ValueError(f"address must be 'host:port' or a list of num_envs of them, got {address!r}")


def _try_start(client: RpcWorldClient) -> BaseException | None:
    try:
        client.start_server()
    except BaseException as exc:  # reported (with the sub-env) by the caller
        return exc
    return None


def _finalize(loop, clients: list[RpcWorldClient]) -> None:
    """Destroy the worlds (if the servers answer), close streams and loop, stop the servers; never raises."""

    async def disconnect_all() -> None:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)

    try:
        if not loop.closed:
            loop.run(disconnect_all())
    except Exception:
        pass
    try:
        loop.close()
    except Exception:
        pass
    for client in clients:
        client.closed = True
    launchers = [c for c in clients if c.launcher is not None]
    if len(launchers) > 1:
        with futures.ThreadPoolExecutor(max_workers=min(len(launchers), 16), thread_name_prefix="alchemy-stop") as pool:
            list(pool.map(_stop_quietly, launchers))
    else:
        for client in launchers:
            _stop_quietly(client)


def _stop_quietly(client: RpcWorldClient) -> None:
    try:
        client.stop_server()
    except Exception:
        pass


RpcAlchemyVectorEnv.__init__.__signature__ = RpcEnvConfig.signature(
    inspect.Parameter("num_envs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1), positional=("level_name",)
)
