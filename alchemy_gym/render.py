"""Rendering of a symbolic Alchemy trial: text (``render_mode="ansi"``) and pictures (``"rgb_array"``).

The picture (:class:`TrialPainter`, also our dm_env_rpc server's ``RGB_INTERLEAVED``) is not the
Unity scene but the same information, coloured like it (task spec §2.4–2.5): a dark cauldron at
the top; one row of up to 3 stones, colour purple / "blurple" / blue, size small / medium /
large, shape pointy (a 4-point star) / somewhat pointy (a rounded diamond) / round; two rows of 6
potions in the colours red, green, orange, yellow, pink, turquoise. Used or empty slots are left
blank. Every shape is a precomputed mask, so a picture costs a copy of the background and at
most 15 masked assignments.
"""

from __future__ import annotations

import numpy as np

from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.core.items import MAX_POTIONS, MAX_STONES, POTION_COLOURS, STONE_FEATURE_NAMES


def describe_stone(coords, reward_indicator: int, value: float) -> str:
    """``blue large round (indicator +1, value +1)``."""
    words = [names[c + 1] for (_, names), c in zip(STONE_FEATURE_NAMES, coords)]
    return f"{' '.join(words):<36} reward indicator {reward_indicator:+d}  value {value:+g}"


def render_ansi(
    game: AlchemyGame, level_name: str = "", episode_index: int | None = None, last_reward: float = 0.0
) -> str:
    """A readable view of a game's current trial: stones, potions, counters."""
    if game.chemistry is None:
        return "Symbolic Alchemy: not started (call reset())\n"
    over = game.trial_number < 0
    trial = game.num_trials - 1 if over else game.trial_number
    rewards = game.trial_rewards
    header = (
        f"Symbolic Alchemy {level_name}"
        + (f" episode {episode_index}" if episode_index is not None else "")
        + f"\nTrial {trial + 1}/{game.num_trials}"
        + (" (episode over)" if over else f"  step {game.steps_this_trial}/{game.max_steps_per_trial}")
        + f"  trial reward {rewards[trial]:+g}  episode return {sum(rewards):+g}"
        + f"  last reward {last_reward:+g}"
    )
    lines = [header, "Stones:"]
    for slot, latent in enumerate(game.stones):
        if slot >= game.num_stones_per_trial and latent < 0:
            continue
        if latent < 0:
            lines.append(f"  [{slot}] (used)")
        else:
            coords, indicator = game.perceived_stone(latent)
            lines.append(f"  [{slot}] {describe_stone(coords, indicator, game.values[latent])}")
    lines.append("Potions:")
    cells = []
    for slot, latent in enumerate(game.potions):
        if slot >= game.num_potions_per_trial and latent < 0:
            continue
        name = "-" if latent < 0 else POTION_COLOURS[game.perceived_potion(latent)]
        cells.append(f"[{slot:>2}] {name:<9}")
    for i in range(0, len(cells), 4):
        lines.append("  " + " ".join(cells[i : i + 4]).rstrip())
    return "\n".join(lines) + "\n"


#: Stone colours by perceived colour coordinate -1, 0, +1 (task spec §2.4).
STONE_RGB = ((0.52156866, 0.22745098, 0.6313726), (0.2608, 0.2667, 0.5941), (0.0, 0.30588236, 0.5568628))
#: Potion colours by perceived potion index 0..5 (task spec §2.5).
POTION_RGB = (
    (0.9647059, 0.015686275, 0.06666667),
    (0.24394463, 0.6911765, 0.35806578),
    (0.9764706, 0.4, 0.10980392),
    (0.9411765, 0.84705883, 0.078431375),
    (0.9843137, 0.43529412, 0.43529412),
    (0.21176471, 0.72156864, 0.7411765),
)
#: Unity stone scale by perceived size coordinate (task spec §2.4).
STONE_SCALE = (1.0, 1.4, 1.8)
#: Superellipse exponents for perceived roundness -1 (pointy), 0, +1 (round).
_ROUNDNESS_EXPONENT = (0.6, 1.2, 2.0)
_TABLE_RGB = np.array([142, 106, 72], dtype=np.uint8)
_CAULDRON_RGB = np.array([40, 40, 44], dtype=np.uint8)


def _to_uint8(rgb) -> np.ndarray:
    return np.round(np.asarray(rgb, dtype=np.float64) * 255).astype(np.uint8)


class TrialPainter:
    """Draws the current trial of an :class:`~alchemy_gym.core.game.AlchemyGame` at a fixed size."""

    def __init__(self, width: int, height: int) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"picture size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        h, w = self.height, self.width
        ys, xs = np.mgrid[0:h, 0:w]
        yy = (ys + 0.5) / h
        xx = (xs + 0.5) / w
        self.background = np.empty((h, w, 3), dtype=np.uint8)
        self.background[:] = _TABLE_RGB
        cauldron = ((xx - 0.5) / 0.16) ** 2 + ((yy - 0.14) / 0.1) ** 2 <= 1.0
        self.background[cauldron] = _CAULDRON_RGB
        # stones: masks[slot][size][roundness] and the colours by colour coordinate
        aspect = w / h
        base = 0.13  # radius (fraction of the height) of the largest stone
        self._stone_masks = []
        for slot in range(MAX_STONES):
            cx, cy = (slot + 0.5) / MAX_STONES, 0.42
            u_full = (xx - cx) * aspect
            v_full = yy - cy
            per_size = []
            for scale in STONE_SCALE:
                r = base * scale / STONE_SCALE[-1]
                u, v = np.abs(u_full) / r, np.abs(v_full) / r
                per_size.append([np.flatnonzero(u**p + v**p <= 1.0) for p in _ROUNDNESS_EXPONENT])
            self._stone_masks.append(per_size)
        self._stone_colours = [_to_uint8(c) for c in STONE_RGB]
        self._potion_masks = []
        per_row = MAX_POTIONS // 2
        for slot in range(MAX_POTIONS):
            row, col = divmod(slot, per_row)
            cx, cy = (col + 0.5) / per_row, 0.7 + 0.18 * row
            body = (np.abs(xx - cx) <= 0.035) & (np.abs(yy - cy) <= 0.06)
            neck = (np.abs(xx - cx) <= 0.012) & (yy >= cy - 0.085) & (yy < cy - 0.06)
            self._potion_masks.append(np.flatnonzero(body | neck))
        self._potion_colours = [_to_uint8(c) for c in POTION_RGB]

        self._key = None
        self._last = self.background

    def paint(self, game) -> np.ndarray:
        """A read-only ``(height, width, 3)`` uint8 picture of ``game``'s current trial (blank table if none).

        The last picture is cached: steps that change nothing cost nothing.
        """
        chemistry = game.chemistry
        if chemistry is None or game.trial_number < 0:
            key = None
        else:
            key = (chemistry, tuple(game.stones), tuple(game.potions))
        if key == self._key:
            return self._last
        image = self.background.copy()
        if key is not None:
            flat = image.reshape(-1, 3)
            for slot, latent in enumerate(game.stones):
                if latent < 0:
                    continue
                (colour, size, roundness), _indicator = game.perceived_stone(latent)
                flat[self._stone_masks[slot][size + 1][roundness + 1]] = self._stone_colours[colour + 1]
            for slot, latent in enumerate(game.potions):
                if latent < 0:
                    continue
                flat[self._potion_masks[slot]] = self._potion_colours[game.perceived_potion(latent)]
        image.setflags(write=False)
        self._key, self._last = key, image
        return image
