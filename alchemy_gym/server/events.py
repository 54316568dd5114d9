"""The world events of a game, as the Unity server sends them (interface spec §6).

:class:`EventRecorder` listens to an :class:`~alchemy_gym.core.game.AlchemyGame` and keeps the
events a client subscribed to; a step takes them as ``google.protobuf.Any`` messages built by
:func:`alchemy_gym.rpc.events.make_event`. The event names and the stones' roundness come from
:mod:`alchemy_gym.rpc.names`, colours and sizes from :mod:`alchemy_gym.render`: the same tables
the clients decode the events with.
"""

from __future__ import annotations

import functools

from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.core.items import (
    NUM_LATENT_STONES,
    NUM_POTION_TYPES,
    POTION_COLOURS,
    POTION_DIM_DIR,
    ROTATION_ANGLES,
    STONE_COORDS,
)
from alchemy_gym.render import POTION_RGB, STONE_RGB, STONE_SCALE
from alchemy_gym.rpc.names import (
    CAULDRON_CREATED,
    CHEMISTRY_CREATED,
    POTION_CREATED,
    POTION_USED,
    ROUNDNESS,
    STONE_CREATED,
    STONE_USED,
    TRIAL_ENDED,
    TRIAL_STARTED,
)

#: The instance id of the one cauldron.
CAULDRON_ID = 1


def stone_id(trial: int, slot: int) -> int:
    """The instance id of the stone in ``slot`` of ``trial``."""
    return 1000 + 100 * trial + slot


def potion_id(trial: int, slot: int) -> int:
    """The instance id of the potion in ``slot`` of ``trial``."""
    return 2000 + 100 * trial + slot


def stone_properties(game: AlchemyGame, latent: int) -> dict:
    """The ``StoneProperties`` of a latent stone under the game's chemistry, as a dict."""
    coords, indicator = game.perceived_stone(latent)
    colour, size, roundness = coords
    r, g, b = STONE_RGB[colour + 1]
    return {
        "size": STONE_SCALE[size + 1],
        "roundness": ROUNDNESS[roundness + 1],
        "reward": 15.0 if indicator == 3 else float(indicator),
        "color": {"r": r, "g": g, "b": b, "a": 1.0},
        "latent": {"index": int(latent), "coordinates": [int(c) for c in STONE_COORDS[latent]]},
    }


def potion_properties(game: AlchemyGame, latent: int) -> dict:
    """The ``PotionProperties`` of a latent potion under the game's chemistry, as a dict."""
    dim, direction = POTION_DIM_DIR[latent]
    perceived = game.perceived_potion(latent)
    r, g, b = POTION_RGB[perceived]
    colour = {"color": {"r": r, "g": g, "b": b, "a": 1.0}, "name": POTION_COLOURS[perceived]}
    trans = game.transitions
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


def _item_created(keys: tuple[str, str], instance_id, trial: int, slot: int, properties, latent: int) -> dict:
    """The detail of a ``StoneCreated`` / ``PotionCreated`` event: ``keys`` are the names of its instance id
    (``instance_id(trial, slot)``) and of its properties (``properties(latent)``)."""
    return {keys[0]: instance_id(trial, slot), keys[1]: properties(latent)}


@functools.cache
def _make_event():
    from alchemy_gym.rpc.events import make_event

    return make_event


class EventRecorder:
    """Listens to an :class:`~alchemy_gym.core.game.AlchemyGame` and records ``WorldEvent`` Anys.

    Args:
        game: the game to listen to.
        subscribed: the event names to record (those the client's pattern matches).
        reward_weights: the game's reward weights (sent in ``ChemistryCreated``).
        seed: the world's seed (``episode_info.random_seed`` of every event).
    """

    def __init__(self, game: AlchemyGame, subscribed: frozenset[str], reward_weights, seed: int) -> None:
        self.game = game
        self.subscribed = subscribed
        self.reward_weights = reward_weights
        self.seed = seed
        self.pending: list = []  # (name, frame, detail builder): protos are built only when requested
        self._properties: dict = {}  # ("stone" | "potion", latent) → message, for the current chemistry
        self.frame = 0
        game.add_listener(self)

    def _emit(self, name: str, detail) -> None:
        """Record an event if subscribed; ``detail`` is a dict or a zero-argument callable returning one."""
        if name in self.subscribed:
            self.pending.append((name, self.frame, detail))

    # Details are built lazily (at most once a step, and only when the client asked for events):
    # everything they read is either captured now or constant within the step (the chemistry).

    def _stone(self, latent: int):
        return self._cached_properties("StoneProperties", stone_properties, latent)

    def _potion(self, latent: int):
        return self._cached_properties("PotionProperties", potion_properties, latent)

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
        self._emit(CAULDRON_CREATED, {"cauldron_instance_id": CAULDRON_ID})
        for name, keys, items, instance_id, properties in (
            (POTION_CREATED, ("potion_instance_id", "potion_properties"), game.potions, potion_id, self._potion),
            (STONE_CREATED, ("stone_instance_id", "stone_properties"), game.stones, stone_id, self._stone),
        ):
            for slot, latent in enumerate(items):
                if latent >= 0:
                    detail = functools.partial(_item_created, keys, instance_id, trial, slot, properties, latent)
                    self._emit(name, detail)
        self._emit(TRIAL_STARTED, {"trial_id": trial})

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
        """The game's listener (:meth:`~alchemy_gym.core.game.AlchemyGame.add_listener`)."""
        game = self.game
        if kind == "episode_start":
            (chemistry,) = args
            self.frame = 0
            self._properties = {}
            self._emit(CHEMISTRY_CREATED, lambda: self._chemistry_created(chemistry))
        elif kind == "trial_start":
            (trial,) = args
            self._trial_items(trial)
        elif kind == "trial_end":
            (trial,) = args
            self._emit(TRIAL_ENDED, {"trial_id": trial})
        elif kind == "potion":
            slot, potion_slot, old, latent_potion, new = args
            trial = game.trial_number
            left = sum(1 for p in game.potions if p >= 0)
            self._emit(
                POTION_USED,
                lambda: {
                    "potion_instance_id": potion_id(trial, potion_slot),
                    "stone_instance_id": stone_id(trial, slot),
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
                STONE_USED,
                lambda: {
                    "stone_instance_id": stone_id(trial, slot),
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
