"""dm_alchemy's own Python API on top of alchemy-gym, for code written against dm_alchemy.

Code that uses DeepMind's symbolic Alchemy through dm_env (acme, dm_alchemy's examples, wrappers
built on ``symbolic_alchemy.get_symbolic_alchemy_level``) changes ``dm_alchemy`` to
``alchemy_gym.compat`` in its imports and runs unchanged, on alchemy-gym's game:

* ``from dm_alchemy import symbolic_alchemy`` → ``from alchemy_gym.compat import symbolic_alchemy``
* ``from dm_alchemy.types import utils`` → ``from alchemy_gym.compat.types import utils``
* ``from dm_alchemy.types import stones_and_potions`` → ``from alchemy_gym.compat.types import stones_and_potions``
* ``from dm_alchemy.encode import chemistries_proto_conversion`` →
  ``from alchemy_gym.compat.encode import chemistries_proto_conversion``

:mod:`alchemy_gym.compat.symbolic_alchemy` needs the ``dm-env`` package
(``pip install "alchemy-gym[dm_env]"``); the other modules need nothing beyond alchemy-gym.
"""
