"""Our dm_env_rpc server: the symbolic game behind the 3D interface (``alchemy-gym serve``).

It stands in for the Unity server in tests and lets a vector env share one server. It is built
on the core game (:class:`~alchemy_gym.core.game.AlchemyGame`), not on the Gymnasium env, and
speaks the protocol of :mod:`alchemy_gym.rpc` (the client side).

* :mod:`~alchemy_gym.server.service` — the ``Environment`` service, worlds and sessions; ``main``.
* :mod:`~alchemy_gym.server.eventfilter` — the bounded-cost matcher of ``EventSubscriptionRegex``.
* :mod:`~alchemy_gym.server.ratelimit` — short, rate-limited log lines for bad requests.
* :mod:`~alchemy_gym.server.image` — ``alchemy-gym build-image``: the server's Docker image, built offline.

Run it with ``alchemy-gym serve`` or ``python -m alchemy_gym.server``.
"""
