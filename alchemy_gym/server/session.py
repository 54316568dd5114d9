"""One client stream's state and its requests: parse, dispatch, answer.

A :class:`Session` lives as long as its ``Process`` stream. It turns each request into a response
(an error status for a bad request, never an exception), joins at most one world of the
server's :class:`~alchemy_gym.server.world.WorldRegistry` at a time and steps it.

Every request is handled in a bounded, small time on the event loop, except a ``JoinWorld`` at a
picture size whose painter is not cached: for it :meth:`Session.handle` returns an
:class:`Offload`, whose ``work`` the servicer runs in a worker thread before ``finish`` answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alchemy_gym.server.observations import Pictures, fill_observations, make_specs
from alchemy_gym.server.protocol import (
    RUNNING,
    TERMINATED,
    ServerError,
    codes,
    error_response,
    invalid,
    pb,
    precondition,
)
from alchemy_gym.server.ratelimit import shorten
from alchemy_gym.server.settings import (
    check_requested,
    check_reset,
    parse_action,
    parse_create_world,
    parse_join_world,
    parse_reset_world,
)

if TYPE_CHECKING:
    from alchemy_gym.server.clients import Client
    from alchemy_gym.server.servicer import AlchemyServicer
    from alchemy_gym.server.world import World


class Offload(Exception):
    """A request that needs slow work first: ``work()`` (run it off the event loop; ``key`` names it, so that
    streams waiting for the same work share it), then ``finish(result)`` on the loop gives the response."""

    def __init__(self, key, work, finish) -> None:
        super().__init__(key)
        self.key = key
        self.work = work
        self.finish = finish

    def run(self):
        """Both steps at once, for callers without an event loop: the response."""
        return self.finish(self.work())


class Session:
    """The state of one ``Process`` stream (one client connection).

    Args:
        servicer: the server: its worlds (``servicer.worlds``), painters (``servicer.painters``) and
            log lines (``malformed_log``, ``internal_log``).
        peer: the client's address, for the log.
        client: the stream's client (:class:`~alchemy_gym.server.clients.Client`), whose quotas its worlds
            count against; ``None``: the session is a client of its own.
    """

    RUNNING, NEW_EPISODE = "running", "new_episode"

    def __init__(self, servicer: AlchemyServicer, peer: str = "?", client: Client | None = None) -> None:
        self.servicer = servicer
        self.worlds = servicer.worlds
        self.peer = peer
        self.client = client
        self.world: World | None = None
        self.state = self.NEW_EPISODE
        self.specs = None
        self.pictures: Pictures | None = None
        self._obs_specs = {}

    # -- dispatch
    def handle_bytes(self, data: bytes):
        """The response to one serialized request (what the stream carries)."""
        try:
            request = pb().EnvironmentRequest.FromString(data)
        except Exception:  # not an EnvironmentRequest: answer, keep the stream
            self.servicer.malformed_log.warning(
                "malformed message (%d bytes) from %s: not a dm_env_rpc EnvironmentRequest (answered INVALID_ARGUMENT)",
                len(data),
                self.peer,
            )
            return error_response(
                codes().INVALID_ARGUMENT,
                f"malformed message: {len(data)} bytes that do not parse as a dm_env_rpc.v1.EnvironmentRequest",
            )
        return self.handle(request)

    def handle(self, request, prepared=None):
        """The response to one request, or an :class:`Offload` (whose ``finish`` calls this again with
        ``prepared``, the result of its work)."""
        payload = request.WhichOneof("payload")
        response = pb().EnvironmentResponse()
        try:
            if payload == "step":
                self.step(request.step, response.step)
            elif payload == "create_world":
                response.create_world.CopyFrom(self.create_world(request.create_world))
            elif payload == "join_world":
                response.join_world.CopyFrom(self.join_world(request.join_world, prepared))
            elif payload == "reset":
                response.reset.CopyFrom(self.reset(request.reset))
            elif payload == "reset_world":
                response.reset_world.CopyFrom(self.reset_world(request.reset_world))
            elif payload == "leave_world":
                self.leave_world()
                response.leave_world.SetInParent()
            elif payload == "destroy_world":
                self.worlds.destroy(request.destroy_world.world_name, self)
                response.destroy_world.SetInParent()
            elif payload is None:
                raise invalid("empty EnvironmentRequest: set one of its payloads (create_world, step …)")
            else:
                raise ServerError(codes().UNIMPLEMENTED, f"{payload} requests are not supported by this server")
        except ServerError as exc:
            response = error_response(exc.code, exc.message)
        except Offload as offload:
            return Offload(offload.key, offload.work, lambda result: self.handle(request, result))
        except Exception as exc:  # a bug: report it, keep serving
            text = f"{type(exc).__name__}: {shorten(exc, 200)}"
            self.servicer.internal_log.error("internal error handling %s: %s", payload, text, exc_info=exc)
            response = error_response(codes().INTERNAL, f"internal error handling {payload}: {text}")
        return response

    # -- worlds
    def create_world(self, request):
        settings = parse_create_world(request.settings)
        client = self.client
        name = self.worlds.create(
            settings.level_name,
            settings.seed,
            settings.subscribed,
            self,
            shareable=settings.shareable,
            client=client,
            client_label=client.label if client is not None else "",
        )
        return pb().CreateWorldResponse(world_name=name)

    def join_world(self, request, painter=None):
        if self.world is not None:
            raise precondition(f"already joined to world {self.world.name!r}: send LeaveWorld first")
        width, height = parse_join_world(request.settings)
        size = (width, height)
        new_size = self.pictures is None or self.pictures.size != size
        if new_size and painter is None:
            painter = self.servicer.painters.get(size)
            if painter is None:
                self.worlds.get(request.world_name, self, "join")  # may it join? (before any work)
                self.servicer.charge_picture_build(self.client, size)
                raise Offload(("painter", size), lambda: self.servicer.painters.build(size), None)
        world = self.worlds.join(request.world_name, self)
        self.world = world
        self.state = self.NEW_EPISODE
        if new_size:
            self.pictures = Pictures(width, height, painter)
        else:
            self.pictures.forget()
        self.specs = make_specs(world.num_actions, world.game.observe_used, width, height)
        self._obs_specs = dict(self.specs.observations)
        return pb().JoinWorldResponse(specs=self.specs)

    def leave_world(self) -> None:
        if self.world is not None:
            self.worlds.leave(self.world, self)
            self.world = None
            self.specs = None

    def reset(self, request):
        if self.world is None:
            raise precondition("not joined to a world: send JoinWorld before Reset")
        check_reset(request.settings)
        self.state = self.NEW_EPISODE
        return pb().ResetResponse(specs=self.specs)

    def reset_world(self, request):
        world = self.worlds.get(request.world_name, self, "reset")
        world.restart(parse_reset_world(request.settings))
        joined = world.joined_by
        if isinstance(joined, Session):
            joined.state = self.NEW_EPISODE
        return pb().ResetWorldResponse()

    # -- stepping
    def step(self, request, response) -> None:
        """Play one step and fill ``response`` (the ``StepResponse`` to send)."""
        world = self.world
        if world is None:
            raise precondition("not joined to a world: send CreateWorld and JoinWorld before Step")
        requested = request.requested_observations
        check_requested(requested, self._obs_specs)
        recorder = world.recorder
        if self.state == self.NEW_EPISODE:
            if recorder is not None:
                recorder.take(build=False)
            world.start_episode()  # actions of the first step are ignored (dm_env_rpc)
            self.state = self.RUNNING
            reward, terminated = 0.0, False
        else:
            action = parse_action(request.actions, world.num_actions)
            if recorder is not None:
                recorder.frame += 1
            reward, terminated = world.game.step(action)
            if terminated:
                self.state = self.NEW_EPISODE
        response.state = TERMINATED if terminated else RUNNING
        fill_observations(response.observations, requested, world, self.pictures, reward, terminated)

    def holds_world(self) -> bool:
        """Whether the session has joined a world or owns one (or a destroyed world's kept slot)."""
        return self.world is not None or self.worlds.owned(self) > 0

    def close(self) -> None:
        """The stream ended: leave the world and drop the worlds this session owns."""
        self.leave_world()
        self.worlds.drop_owned(self)
