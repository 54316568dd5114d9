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
* Every stream presents ``authorization: Bearer TOKEN`` in its call metadata when the server has
  tokens (``alchemy-gym serve --token-file``).
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

Every request is handled on the server's one event loop, so nothing a client sends may hold it
for more than a few milliseconds, no client may touch another's worlds, and no client may take
what the others need:

* *Event subscriptions.* A client's pattern never reaches Python's backtracking ``re``: it is
  parsed by :mod:`alchemy_gym.server.eventfilter`, a linear-time subset (literals, ``.``, classes,
  groups, ``|``, ``* + ?``, ``^ $``; at most 256 characters, groups at most 16 deep; everything
  else, e.g. ``{m,n}`` or back-references, is INVALID_ARGUMENT naming what is allowed) run once at
  ``CreateWorld`` over the server's eight event names (:data:`EVENT_NAMES`). A step then only
  looks names up in that set. ``DeepMind/.*`` and ``.*``, what the 3D clients send, work as before.
* *Sizes.* Every setting is checked (type and shape before its value is unpacked, string
  lengths, ranges, picture size; at most :data:`MAX_SETTINGS` settings and
  :data:`MAX_REQUESTED_OBSERVATIONS` requested observation ids) and refused with
  INVALID_ARGUMENT naming the bound (:mod:`alchemy_gym.server.settings`); a request message has at
  most ``max_request_bytes`` (64 KiB; a larger one ends its stream with RESOURCE_EXHAUSTED).
* *Pictures.* A picture size's painter is built once, in a worker thread, and the last 16 sizes
  are kept (:class:`~alchemy_gym.server.observations.PainterCache`); a client may ask for at most
  ``picture_builds_per_minute`` new sizes.
* *Worlds belong to their creator.* Other connections get PERMISSION_DENIED for ``JoinWorld``,
  ``ResetWorld`` and ``DestroyWorld`` unless the world was created with ``shareable=True``;
  world names are random, and a NOT_FOUND error lists only the caller's own worlds
  (:class:`~alchemy_gym.server.world.WorldRegistry`).
* *Fair shares* (:mod:`alchemy_gym.server.clients`). Limits count per client (a token at an
  address), not per connection: connections, worlds, requests a second, the share of the loop's
  time while others wait, new picture sizes. A world destroyed by its owner keeps its slot for
  :data:`KEEP_SLOT_SECONDS` (a reset re-creates it); a stream without a world gives way to a
  newcomer when all connections are in use.
* *Access* (:mod:`alchemy_gym.server.auth`). With tokens, a stream without one of them is ended
  with UNAUTHENTICATED before any world exists; tokens never appear in logs or errors.
* *Closes say why.* Idle (``idle_timeout``), made room, full, shutting down, unauthenticated:
  each is a status with the server's reason, which the clients report.
* *Malformed messages* (bytes that do not parse as an ``EnvironmentRequest``) get
  INVALID_ARGUMENT on a stream that stays open. They, refused streams and internal errors are
  logged one short line each, at most 5 lines a minute per kind and then a count of the
  suppressed ones (:class:`~alchemy_gym.server.ratelimit.RateLimitedLog`), so the log keeps its
  start-up line and real errors findable.

This module is the server's entry point (``python -m alchemy_gym.server.service``, the Docker
image's) and gathers its public names; the work is done in one module per job:

* :mod:`~alchemy_gym.server.settings` — what a client sends (settings, actions, world names), checked;
* :mod:`~alchemy_gym.server.events` — a game's world events, encoded as the Unity server sends them;
* :mod:`~alchemy_gym.server.observations` — the specs and a step's observations as tensors;
* :mod:`~alchemy_gym.server.world` — worlds and the registry that owns them and counts them against the limits;
* :mod:`~alchemy_gym.server.session` — one stream's state and its requests;
* :mod:`~alchemy_gym.server.auth` — tokens;
* :mod:`~alchemy_gym.server.clients` — clients, their quotas and rates;
* :mod:`~alchemy_gym.server.servicer` — the ``Environment`` service, admission and closes, ``start_server``;
* :mod:`~alchemy_gym.server.background` — the server on a background thread (``make_server``);
* :mod:`~alchemy_gym.server.cli` — ``alchemy-gym serve``.

The names and encodings shared with the clients are in :mod:`alchemy_gym.rpc.names`.
"""

from __future__ import annotations

import sys

from alchemy_gym.rpc.names import EVENT_NAMES
from alchemy_gym.server.auth import TokenError, TokenSet, read_token_file
from alchemy_gym.server.background import BackgroundServer, make_server
from alchemy_gym.server.cli import DEFAULT_PORT, main
from alchemy_gym.server.clients import (
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_PICTURE_BUILDS_PER_MINUTE,
    DEFAULT_REQUEST_RATE,
    Limits,
)
from alchemy_gym.server.observations import (
    OBS_DISCOUNT,
    OBS_EVENTS,
    OBS_REWARD,
    OBS_RGB,
    OBS_SCORE,
    OBS_SYMBOLIC,
)
from alchemy_gym.server.protocol import ServerError
from alchemy_gym.server.servicer import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BYTES,
    IDLE_CLOSED,
    MADE_ROOM,
    SERVER_FULL,
    SHUTTING_DOWN,
    UNAUTHENTICATED,
    AlchemyServicer,
    LoopStats,
    check_idle_timeout,
    log,
    start_server,
)
from alchemy_gym.server.settings import (
    ACTION_UID,
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    MAX_PICTURE_PIXELS,
    MAX_PICTURE_SIDE,
    MAX_REQUESTED_OBSERVATIONS,
    MAX_SETTINGS,
    MAX_STRING_SETTING,
    MAX_WORLD_NAME,
    subscribed_events,
)
from alchemy_gym.server.world import (
    DEFAULT_MAX_WORLDS_PER_CLIENT,
    DEFAULT_MAX_WORLDS_PER_CONNECTION,
    KEEP_SLOT_SECONDS,
    MAX_WORLDS,
)

__all__ = [
    "ACTION_UID",
    "DEFAULT_HEIGHT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_CLIENT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_WORLDS_PER_CLIENT",
    "DEFAULT_MAX_WORLDS_PER_CONNECTION",
    "DEFAULT_PICTURE_BUILDS_PER_MINUTE",
    "DEFAULT_PORT",
    "DEFAULT_REQUEST_RATE",
    "DEFAULT_WIDTH",
    "EVENT_NAMES",
    "IDLE_CLOSED",
    "KEEP_SLOT_SECONDS",
    "MADE_ROOM",
    "MAX_PICTURE_PIXELS",
    "MAX_PICTURE_SIDE",
    "MAX_REQUESTED_OBSERVATIONS",
    "MAX_SETTINGS",
    "MAX_STRING_SETTING",
    "MAX_WORLDS",
    "MAX_WORLD_NAME",
    "OBS_DISCOUNT",
    "OBS_EVENTS",
    "OBS_REWARD",
    "OBS_RGB",
    "OBS_SCORE",
    "OBS_SYMBOLIC",
    "SERVER_FULL",
    "SHUTTING_DOWN",
    "UNAUTHENTICATED",
    "AlchemyServicer",
    "BackgroundServer",
    "Limits",
    "LoopStats",
    "ServerError",
    "TokenError",
    "TokenSet",
    "check_idle_timeout",
    "log",
    "main",
    "make_server",
    "read_token_file",
    "start_server",
    "subscribed_events",
]

if __name__ == "__main__":
    sys.exit(main())
