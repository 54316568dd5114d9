"""Our dm_env_rpc server: the symbolic game behind the 3D interface (``alchemy-gym serve``).

It stands in for the Unity server in tests and lets a vector env share one server. It is built
on the core game (:class:`~alchemy_gym.core.game.AlchemyGame`), not on the Gymnasium env, and
speaks the protocol of :mod:`alchemy_gym.rpc` (the client side).

* :mod:`~alchemy_gym.server.service` — the protocol it serves, its public names; the entry point.
* :mod:`~alchemy_gym.server.settings` — what a client sends (settings, actions, world names), checked.
* :mod:`~alchemy_gym.server.eventfilter` — the bounded-cost matcher of ``EventSubscriptionRegex``.
* :mod:`~alchemy_gym.server.events` — a game's world events, encoded as the Unity server sends them.
* :mod:`~alchemy_gym.server.observations` — the specs and a step's observations as tensors.
* :mod:`~alchemy_gym.server.world` — worlds, and the registry that owns them and counts them against the limits.
* :mod:`~alchemy_gym.server.session` — one client stream's state and its requests.
* :mod:`~alchemy_gym.server.auth` — the server's tokens: read from a file or the environment, checked in constant time.
* :mod:`~alchemy_gym.server.clients` — who the clients are (a token at an address) and their quotas and rates.
* :mod:`~alchemy_gym.server.servicer` — the ``Environment`` service: admission, the read loop, closes with a
  reason, off-loop work, loop statistics; ``start_server``.
* :mod:`~alchemy_gym.server.background` — the server on a background thread (``make_server``).
* :mod:`~alchemy_gym.server.cli` — ``alchemy-gym serve``.
* :mod:`~alchemy_gym.server.protocol` — dm_env_rpc's messages and status codes; ``ServerError``.
* :mod:`~alchemy_gym.server.ratelimit` — short, rate-limited log lines for bad requests.
* :mod:`~alchemy_gym.server.image` — ``alchemy-gym build-image``: the server's Docker image, built offline.

The names and encodings it shares with the clients are in :mod:`alchemy_gym.rpc.names`.

Run it with ``alchemy-gym serve`` or ``python -m alchemy_gym.server``.
"""
