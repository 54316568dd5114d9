"""The specs a client gets when it joins a world, and the observations of a step, as tensors.

The observation names come from :mod:`alchemy_gym.rpc.names` (the clients read the same), each
with its uid here. :class:`Pictures` paints a game's trial at one size
(:class:`~alchemy_gym.render.TrialPainter`) and keeps the last picture's tensor.

A painter is costly to build (its masks: about 0.1 s of CPU at 640×480), so the server builds
one per picture size, off its event loop, and keeps the last :data:`MAX_CACHED_SIZES` sizes in a
:class:`PainterCache`; each stream paints with a cheap copy of the cached one.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict

import numpy as np

from alchemy_gym.core.batch import observation_bounds
from alchemy_gym.render import TrialPainter
from alchemy_gym.rpc import names
from alchemy_gym.server.protocol import pb
from alchemy_gym.server.settings import ACTION_UID

#: The uids of the observations.
OBS_SYMBOLIC, OBS_SCORE, OBS_RGB, OBS_EVENTS, OBS_REWARD, OBS_DISCOUNT = 1, 2, 3, 4, 5, 6


def make_specs(num_actions: int, observe_used: bool, width: int, height: int):
    """The ``ActionObservationSpecs`` of a world whose game has ``num_actions`` actions and observes the used
    items or not (``observe_used``), with pictures of ``width`` × ``height``."""
    from dm_env_rpc.v1 import tensor_spec_utils

    data_type = pb().DataType
    specs = pb().ActionObservationSpecs()
    action = specs.actions[ACTION_UID]
    action.name, action.dtype = names.ACTION, data_type.INT64
    tensor_spec_utils.set_bounds(action, np.int64(0), np.int64(num_actions - 1))
    low, high = observation_bounds(observe_used)
    symbolic = specs.observations[OBS_SYMBOLIC]
    symbolic.name, symbolic.dtype = names.SYMBOLIC_OBS, data_type.FLOAT
    symbolic.shape.extend(low.shape)
    tensor_spec_utils.set_bounds(symbolic, low, high)
    score = specs.observations[OBS_SCORE]
    score.name, score.dtype = names.SCORE, data_type.DOUBLE
    rgb = specs.observations[OBS_RGB]
    rgb.name, rgb.dtype = names.RGB, data_type.UINT8
    rgb.shape.extend((height, width, 3))
    events = specs.observations[OBS_EVENTS]
    events.name, events.dtype = names.EVENTS, data_type.PROTO
    events.shape.append(-1)
    reward = specs.observations[OBS_REWARD]
    reward.name, reward.dtype = names.REWARD, data_type.DOUBLE
    discount = specs.observations[OBS_DISCOUNT]
    discount.name, discount.dtype = names.DISCOUNT, data_type.DOUBLE
    tensor_spec_utils.set_bounds(discount, np.float64(0.0), np.float64(1.0))
    return specs


#: Picture sizes whose painters a server keeps (the least recently used one is dropped first).
MAX_CACHED_SIZES = 16


class PainterCache:
    """Painters by picture size, the :data:`MAX_CACHED_SIZES` (``max_sizes``) most recently used.

    The cached painters are templates: they are copied (:class:`Pictures`), never painted with.
    :meth:`build` may run in a worker thread; the cache is safe to use from threads.
    """

    def __init__(self, max_sizes: int = MAX_CACHED_SIZES) -> None:
        self.max_sizes = max_sizes
        self._painters: OrderedDict[tuple[int, int], TrialPainter] = OrderedDict()
        self._lock = threading.Lock()
        #: painters built so far
        self.builds = 0

    def get(self, size: tuple[int, int]) -> TrialPainter | None:
        """The painter of ``size`` (``(width, height)``) if cached."""
        with self._lock:
            painter = self._painters.get(size)
            if painter is not None:
                self._painters.move_to_end(size)
            return painter

    def build(self, size: tuple[int, int]) -> TrialPainter:
        """Build the painter of ``size`` and cache it (the slow part: run it off the event loop)."""
        painter = TrialPainter(*size)
        with self._lock:
            self.builds += 1
            self._painters[size] = painter
            self._painters.move_to_end(size)
            while len(self._painters) > self.max_sizes:
                self._painters.popitem(last=False)
        return painter

    def __len__(self) -> int:
        with self._lock:
            return len(self._painters)


class Pictures:
    """The ``RGB_INTERLEAVED`` tensors of a game's trial at one size; the last one is reused while the
    painter returns the same picture.

    ``painter``: a cached painter of that size (:class:`PainterCache`) to copy instead of building one.
    """

    def __init__(self, width: int, height: int, painter: TrialPainter | None = None) -> None:
        # a shallow copy shares the template's masks and background and keeps its own last picture
        self.painter = copy.copy(painter) if painter is not None else TrialPainter(width, height)
        self._last: tuple[np.ndarray, object] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.painter.width, self.painter.height

    def forget(self) -> None:
        """Drop the kept tensor (a new world)."""
        self._last = None

    def tensor(self, game):
        """The picture of ``game`` now, as a ``Tensor``."""
        image = self.painter.paint(game)
        last = self._last
        if last is not None and last[0] is image:
            return last[1]
        tensor = pb().Tensor()
        tensor.uint8s.array = image.tobytes()
        tensor.shape.extend(image.shape)
        self._last = (image, tensor)
        return tensor


def fill_observations(observations, requested, world, pictures: Pictures, reward: float, terminated: bool) -> None:
    """Write the ``requested`` observation uids (checked) of ``world`` after a step into ``observations`` (the
    ``StepResponse``'s map); the world's recorded events are taken, or dropped if not requested."""
    game = world.game
    recorder = world.recorder
    for uid in requested:
        if uid in observations:
            continue
        if uid == OBS_SYMBOLIC:
            tensor = observations[uid]
            tensor.floats.array.extend(game.obs.tolist())
            tensor.shape.append(game.obs.shape[0])
        elif uid == OBS_SCORE:
            observations[uid].doubles.array.append(world.episode_return)
        elif uid == OBS_RGB:
            observations[uid].CopyFrom(pictures.tensor(game))
        elif uid == OBS_EVENTS:
            events = recorder.take() if recorder is not None else []
            tensor = observations[uid]
            tensor.protos.array.extend(events)
            tensor.shape.append(len(events))
        elif uid == OBS_REWARD:
            observations[uid].doubles.array.append(float(reward))
        elif uid == OBS_DISCOUNT:
            observations[uid].doubles.array.append(0.0 if terminated else 1.0)
    if recorder is not None and OBS_EVENTS not in requested:
        recorder.take(build=False)
