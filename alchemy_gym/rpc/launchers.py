"""One dm_env_rpc server per env: a Docker container, a local process, or an existing address.

Every launcher has the same small life cycle::

    launcher = DockerLauncher(image)          # nothing runs yet
    address = launcher.start(timeout=60.0)    # "127.0.0.1:PORT", ready: a real dm_env_rpc call answered
    ...                                       # connect with open_channel / open_aio_channel
    launcher.close()                          # idempotent; also run at garbage collection and exit

* :class:`DockerLauncher` runs an image (default the Unity one,
  ``gcr.io/deepmind-environments/alchemy:v1.0.0``) with container port 10000
  published on 127.0.0.1 at a free host port, labelled ``alchemy-gym.managed=1``
  (see :func:`remove_stale_containers`), and removes the container on close.
* :class:`LocalBinaryLauncher` runs a program (a dm_alchemy Unity directory, or any
  server command with a ``{port}`` placeholder) as a subprocess, killed on close.
* :class:`AddressLauncher` uses a server that is already running: nothing is
  launched and nothing is killed.

Readiness is a real dm_env_rpc exchange (an empty ``StepRequest``, to which a
live server answers with an error status) retried with backoff until a bounded
timeout; on failure the error carries the tail of the server's log. A server that
refuses the stream because all its connections are in use raises :class:`ServerFull`
at once (no retries); one that refuses the token, :class:`Unauthenticated`.

## Tokens

``launcher.token`` is what the env presents to the server (``authorization: Bearer TOKEN``
in the call metadata; :mod:`alchemy_gym.server.auth` checks it). ``token=`` sets it; otherwise:

* :class:`DockerLauncher` makes a fresh random token for an image labelled
  :data:`~alchemy_gym.rpc.names.TOKEN_IMAGE_LABEL` (our server's image), passed to the
  container in the environment variable the label names; other images (the Unity one) get none;
* :class:`LocalBinaryLauncher` makes one for any program other than a Unity build and passes it
  in ``ALCHEMY_GYM_TOKEN`` (our server reads it; a program that does not ignores it);
* :class:`AddressLauncher` has none unless given (the server's operator gives it out).

A token made by a launcher lives as long as its server: nothing else can use that server.
"""

from __future__ import annotations

import abc
import os
import secrets
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence

from alchemy_gym.rpc import CONTAINER_PORT, DEFAULT_IMAGE
from alchemy_gym.rpc.names import TOKEN_ENV, TOKEN_FILE_ENV, TOKEN_IMAGE_LABEL, token_metadata

#: Label put on every container we start (value ``"1"``); more labels say who started it.
LABEL = "alchemy-gym.managed"
LABEL_PID = "alchemy-gym.pid"
LABEL_HOST = "alchemy-gym.host"

DEFAULT_TIMEOUT = 60.0


class LaunchError(RuntimeError):
    """The server could not be started or never became ready (the message carries its log's tail)."""


class ServerRefused(LaunchError):
    """The server answered, but refused the connection (the message gives the server's reason)."""


class ServerFull(ServerRefused):
    """The server answered, but refused the connection: it serves its limit of connections (the message says it)."""


class Unauthenticated(ServerRefused):
    """The server answered, but refused the connection's token (none, or not one of the server's)."""


def new_token() -> str:
    """A fresh random token (32 random bytes, URL-safe text)."""
    return secrets.token_urlsafe(32)


def open_channel(address: str):
    """A plain-text gRPC channel to ``address``.

    dm_alchemy connects to the Unity server with ``grpc.local_channel_credentials()``; on the wire
    those are plain text too, and a plain-text client talks to servers with local (or insecure)
    credentials alike, at about three quarters of the client CPU per call.
    """
    import grpc

    return grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)


def open_aio_channel(address: str):
    """The ``grpc.aio`` version of :func:`open_channel` (make it inside a coroutine of the loop that uses it)."""
    import grpc

    return grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)


_CHANNEL_OPTIONS = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def probe(address: str, timeout: float, token: str | None = None) -> str | None:
    """One readiness check: ``None`` if a dm_env_rpc server answered at ``address`` within ``timeout``
    seconds, else a short reason; :class:`ServerFull` if it refused the stream for being full,
    :class:`Unauthenticated` if it refused ``token``."""
    import grpc
    from dm_env_rpc.v1 import dm_env_rpc_pb2 as pb
    from dm_env_rpc.v1 import dm_env_rpc_pb2_grpc

    from alchemy_gym.rpc.connection import is_server_full

    channel = open_channel(address)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return f"no gRPC connection to {address} within {timeout:.1f} s"
        stub = dm_env_rpc_pb2_grpc.EnvironmentStub(channel)
        request = pb.EnvironmentRequest(step=pb.StepRequest())
        try:
            responses = stub.Process(iter([request]), timeout=timeout, metadata=token_metadata(token))
            response = next(responses)
        except grpc.RpcError as exc:
            if is_server_full(exc.code(), exc.details()):
                details = exc.details()
                raise ServerFull(f"the dm_env_rpc server at {address} refused the connection: {details}") from None
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                details = exc.details()
                given = "the token given" if token is not None else "no token"
                raise Unauthenticated(
                    f"the dm_env_rpc server at {address} refused the connection with {given}: {details}"
                ) from None
            return f"gRPC error from {address}: {exc.code().name}: {exc.details()}"
        except StopIteration:
            return f"{address} closed the stream without answering"
        if response.WhichOneof("payload") is None:
            return f"{address} answered with an empty response"
        return None  # an error status (not joined) or a step: either way a live dm_env_rpc server
    finally:
        channel.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Launcher(abc.ABC):
    """Starts (or finds) one dm_env_rpc server and stops it again."""

    address: str | None = None
    #: the token to present to the server (module docstring, *Tokens*)
    token: str | None = None

    @abc.abstractmethod
    def start(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Start the server and wait until it answers; returns its ``host:port``."""

    def close(self) -> None:  # noqa: B027 (launchers that start nothing have nothing to stop)
        """Stop what was started (idempotent)."""

    def alive(self) -> bool | None:
        """Whether the server process/container still runs (``None``: unknown)."""
        return None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log ('' when there is none)."""
        return ""

    def describe(self) -> str:
        """A short description for error messages."""
        return f"dm_env_rpc server at {self.address}"

    def _wait_ready(self, address: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay, attempt, reason = 0.05, 0, "not tried"
        while True:
            alive = self.alive()
            if alive is False:
                raise LaunchError(
                    f"{self.describe()} exited before it was ready ({reason})" + _tail_text(self.log_tail())
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            attempt += 1
            reason = probe(address, timeout=min(max(remaining, 0.05), 2.0), token=self.token)
            if reason is None:
                return
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 1.5, 1.0)
        raise LaunchError(
            f"{self.describe()} was not ready after {timeout:.1f} s ({attempt} attempts; last: {reason})"
            + _tail_text(self.log_tail())
        )

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tail_text(tail: str) -> str:
    tail = tail.strip()
    return f"\n--- last lines of the server's log ---\n{tail}" if tail else "\n(the server wrote no log)"


class AddressLauncher(Launcher):
    """A server that already runs at ``address`` (``"host:port"``): nothing is started or stopped.

    ``token``: the server's token, if it needs one.
    """

    def __init__(self, address: str, token: str | None = None) -> None:
        if not isinstance(address, str) or ":" not in address:
            raise ValueError(f"address must be 'host:port', got {address!r}")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address must be 'host:port' with a port in 1..65535, got {address!r}")
        self.address = address
        self.token = _check_token(token)

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        self._wait_ready(self.address, timeout)
        return self.address

    def describe(self) -> str:
        return f"dm_env_rpc server at {self.address} (not started by us)"


# ------------------------------------------------------------------------------ local binary

#: Arguments of a dm_alchemy Unity build (``load_from_disk``, interface spec §1).
UNITY_ARGS = (
    "-logfile",
    "-batchmode",
    "-noaudio",
    "--logtostderr",
    "--server_type=GRPC",
    "--uri_address=[::]:{port}",
)


def _stop_process(process: subprocess.Popen, log_file) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            os.killpg(process.pid, signal.SIGCONT)  # a stopped (paused, hung) server acts on SIGTERM only once resumed
        except (ProcessLookupError, PermissionError):
            process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.wait(5)
    if log_file is not None:
        log_file.close()


class LocalBinaryLauncher(Launcher):
    """Run a server program as a subprocess (its own process group, killed on close).

    Args:
        binary: a dm_alchemy directory holding ``Linux64Player`` (run with :data:`UNITY_ARGS` and
            ``UNITY_RENDERER=software``, ``UNITY_OSMESA_PATH``), or the path of any executable.
        args: its arguments; ``{port}`` is replaced by the chosen port. Default: :data:`UNITY_ARGS`
            for a Unity directory, none otherwise.
        environment: extra environment variables for the process.
        port: the port to use (default: a free one).
        host: where to connect (default 127.0.0.1).
        token: the token to give the program in ``ALCHEMY_GYM_TOKEN`` and to present (default: a fresh
            random one; none for a Unity build, which does not check tokens).
    """

    def __init__(
        self,
        binary: str | os.PathLike,
        args: Sequence[str] | None = None,
        *,
        environment: Mapping[str, str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        token: str | None = None,
    ) -> None:
        binary = os.fspath(binary)
        env_extra = dict(environment or {})
        if os.path.isdir(binary):
            player = os.path.join(binary, "Linux64Player")
            osmesa = os.path.join(binary, "external_libosmesa_llvmpipe.so")
            if not (os.path.exists(player) and os.path.exists(osmesa)):
                raise ValueError(
                    f"{binary!r} is a directory without Linux64Player and external_libosmesa_llvmpipe.so: "
                    "pass a dm_alchemy Unity build directory or the path of a server executable"
                )
            env_extra = {"UNITY_RENDERER": "software", "UNITY_OSMESA_PATH": osmesa, **env_extra}
            executable, default_args = player, UNITY_ARGS
        else:
            if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
                raise ValueError(f"binary {binary!r} is not an executable file (nor a dm_alchemy directory)")
            executable, default_args = binary, ()
            token = _check_token(token) or env_extra.get(TOKEN_ENV) or new_token()
            env_extra[TOKEN_ENV] = token
        self.token = _check_token(token)
        self.executable = executable
        self.args = tuple(str(a) for a in (default_args if args is None else args))
        self.environment = {str(k): str(v) for k, v in env_extra.items()}
        self.port = port
        self.host = host
        self.process: subprocess.Popen | None = None
        self._log_path: str | None = None
        self._finalizer = None

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        if self.process is not None:
            raise RuntimeError("this launcher was already started")
        port = self.port or free_port(self.host)
        argv = [self.executable] + [a.replace("{port}", str(port)) for a in self.args]
        fd, self._log_path = tempfile.mkstemp(prefix="alchemy-gym-server-", suffix=".log")
        log_file = os.fdopen(fd, "wb")
        env = {**os.environ, **self.environment}
        if TOKEN_ENV in self.environment:  # our token, not a token file the caller's environment may name
            env.pop(TOKEN_FILE_ENV, None)
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise LaunchError(f"cannot run {shlex.join(argv)}: {exc}") from None
        self._finalizer = weakref.finalize(self, _stop_process, self.process, log_file)
        self.address = f"{self.host}:{port}"
        try:
            self._wait_ready(self.address, timeout)
        except BaseException:
            self.close()
            raise
        return self.address

    def alive(self) -> bool | None:
        return None if self.process is None else self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        pid = self.process.pid if self.process else None
        code = self.process.poll() if self.process else None
        state = f", exit code {code}" if code is not None else ""
        return f"local server {os.path.basename(self.executable)} (pid {pid}{state}) at {self.address}"

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        if self._log_path and os.path.exists(self._log_path):
            os.unlink(self._log_path)


# ------------------------------------------------------------------------------- docker


def docker_client(timeout: float = 30.0):
    """``docker.from_env()`` with a clear error when no Docker engine can be reached."""
    try:
        import docker
    except ImportError:
        raise LaunchError("the docker SDK is not installed: pip install 'alchemy-gym[rpc]'") from None
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise LaunchError(f"no Docker engine at {host}: {exc}") from None
    return client


def _remove_container(client, container_id: str, close_client: bool) -> None:
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except Exception:  # already gone, or the engine went away at exit
        pass
    if close_client:
        try:
            client.close()
        except Exception:
            pass


class DockerLauncher(Launcher):
    """Run a server image in a Docker container, one container per env.

    Args:
        image: the image (default the Unity image of dm_alchemy v1.0.0); pulled if absent and ``pull``.
        environment: environment variables of the container (e.g. ``LP_NUM_THREADS``).
        port: host port to publish 10000 on (default: one Docker picks); always on 127.0.0.1.
        pull: pull the image when it is not present locally.
        client: a ``docker.DockerClient`` (default ``docker.from_env()``).
        labels: extra container labels.
        run_kwargs: extra ``containers.run`` arguments (e.g. ``cpuset_cpus``, ``mem_limit``).
        token: the token to present (and to give the container, if its image checks tokens); default: a
            fresh random one for an image labelled :data:`~alchemy_gym.rpc.names.TOKEN_IMAGE_LABEL` (ours),
            none for other images (the Unity one).
    """

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        environment: Mapping[str, str] | None = None,
        port: int | None = None,
        pull: bool = True,
        client=None,
        labels: Mapping[str, str] | None = None,
        container_port: int = CONTAINER_PORT,
        run_kwargs: Mapping[str, object] | None = None,
        token: str | None = None,
    ) -> None:
        if not isinstance(image, str) or not image:
            raise ValueError(f"image must be a non-empty image name, got {image!r}")
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise ValueError(f"port must be an int in 1..65535 or None, got {port!r}")
        self.image = image
        self.environment = {str(k): str(v) for k, v in (environment or {}).items()}
        self.port = port
        self.pull = pull
        self._client = client
        self._own_client = client is None
        self.labels = {LABEL: "1", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname(), **(labels or {})}
        self.container_port = container_port
        self.run_kwargs = dict(run_kwargs or {})
        self.token = _check_token(token)
        self.container = None
        self._finalizer = None

    @property
    def client(self):
        if self._client is None:
            self._client = docker_client()
        return self._client

    def _ensure_image(self):
        """The image (pulled if absent and allowed)."""
        import docker

        try:
            return self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise LaunchError(f"cannot inspect Docker image {self.image!r}: {exc}") from None
        if not self.pull:
            raise LaunchError(f"Docker image {self.image!r} is not present and pull=False")
        try:
            return self.client.images.pull(self.image)
        except docker.errors.APIError as exc:
            raise LaunchError(
                f"Docker image {self.image!r} is not present locally and could not be pulled: "
                f"{getattr(exc, 'explanation', None) or exc}"
            ) from None

    def _token_environment(self, image) -> dict[str, str]:
        """The container's environment: the caller's, plus the token if the image checks tokens (its label
        names the variable; a token is made if none was given)."""
        environment = dict(self.environment)
        variable = ((getattr(image, "labels", None) or {}).get(TOKEN_IMAGE_LABEL) or "").strip()
        if variable:
            self.token = self.token or environment.get(variable) or new_token()
            environment[variable] = self.token
        return environment

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        import docker

        if self.container is not None:
            raise RuntimeError("this launcher was already started")
        environment = self._token_environment(self._ensure_image())
        try:
            self.container = self.client.containers.run(
                self.image,
                detach=True,
                ports={f"{self.container_port}/tcp": ("127.0.0.1", self.port)},
                environment=environment,
                labels=self.labels,
                **self.run_kwargs,
            )
        except docker.errors.APIError as exc:
            # a failed start can leave a created container behind: find it by our pid label
            self._remove_leftovers()
            message = getattr(exc, "explanation", None) or str(exc)
            taken = "allocated" in message or "already in use" in message
            hint = " (the host port is taken: pass another port, or none to let Docker pick)" if taken else ""
            raise LaunchError(f"cannot start a container of {self.image!r}: {message}{hint}") from None
        self._finalizer = weakref.finalize(self, _remove_container, self.client, self.container.id, self._own_client)
        try:
            host_port = self._published_port()
            self.address = f"127.0.0.1:{host_port}"
            self._wait_ready(self.address, timeout)
        except BaseException:
            self.close()
            raise
        return self.address

    def _remove_leftovers(self) -> None:
        try:
            stale = self.client.containers.list(
                all=True, filters={"label": [f"{LABEL_PID}={os.getpid()}"], "status": "created"}
            )
            for container in stale:
                container.remove(force=True)
        except Exception:
            pass

    def _published_port(self) -> int:
        for _ in range(50):
            self.container.reload()
            bindings = (self.container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
                f"{self.container_port}/tcp"
            )
            if bindings:
                return int(bindings[0]["HostPort"])
            if self.container.status not in ("created", "running"):
                break
            time.sleep(0.02)
        raise LaunchError(
            f"container {self.container.short_id} of {self.image!r} has no published port for {self.container_port} "
            f"(status {self.container.status})" + _tail_text(self.log_tail())
        )

    def alive(self) -> bool | None:
        if self.container is None:
            return None
        try:
            self.container.reload()
        except Exception:
            return False
        return self.container.status in ("created", "running")

    def status(self) -> str:
        """The container's state (``running``, ``exited (137)``, ``removed`` …)."""
        if self.container is None:
            return "not started"
        try:
            self.container.reload()
        except Exception:
            return "removed"
        state = self.container.attrs.get("State", {})
        if self.container.status == "exited":
            return f"exited ({state.get('ExitCode')})" + (" killed (OOM)" if state.get("OOMKilled") else "")
        return self.container.status

    def log_tail(self, lines: int = 30) -> str:
        if self.container is None:
            return ""
        try:
            return self.container.logs(tail=lines).decode("utf-8", "replace")
        except Exception:
            return ""

    def describe(self) -> str:
        cid = self.container.short_id if self.container is not None else "-"
        return f"Docker container {cid} of image {self.image!r} at {self.address}"

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def _check_token(token):
    """``token`` if it can be sent as a bearer token (a non-empty str of printable ASCII without spaces), or None."""
    if token is None:
        return None
    if not isinstance(token, str) or not token or not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError("token must be a non-empty str of printable ASCII characters without spaces, or None")
    return token


def remove_stale_containers(client=None, *, only_dead_owners: bool = True) -> list[str]:
    """Remove containers labelled :data:`LABEL` (left by a crashed Python); returns their ids.

    With ``only_dead_owners`` (default) only containers whose starting process
    (label :data:`LABEL_PID`, same host) no longer exists are removed.
    """
    client = client or docker_client()
    removed = []
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        labels = container.labels or {}
        if only_dead_owners and labels.get(LABEL_HOST) == host:
            try:
                os.kill(int(labels.get(LABEL_PID, "0")), 0)
                continue  # owner alive
            except (ProcessLookupError, ValueError):
                pass
            except PermissionError:
                continue
        container.remove(force=True)
        removed.append(container.id)
    return removed
