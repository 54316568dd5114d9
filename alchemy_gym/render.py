"""Rendering of a symbolic Alchemy trial: text (``render_mode="ansi"``) and pictures (``"rgb_array"``).

Two painters draw the same information, coloured like the Unity scene (task spec §2.4–2.5): stones
in purple / "blurple" / blue, small / medium / large, pointy (a 4-point star) / somewhat pointy (a
rounded diamond) / round; potions in red, green, orange, yellow, pink, turquoise.

* :class:`FramePainter` makes the symbolic envs' ``rgb_array`` pictures, for people and videos:
  ``240·s × 180·s`` pixels (``render_scale`` ``s``), with a strip that says the trial, the step and
  the reward so far, each stone's value, used items marked, and text in a built-in 5×7 bitmap font
  (:func:`draw_text`; numpy only, no font files).
* :class:`TrialPainter` makes our dm_env_rpc server's ``RGB_INTERLEAVED`` observation at the size
  the client asks for: the scene alone (cauldron, stones, potions), like the 3D env's camera.

Every shape is a precomputed mask, so a picture costs copies and a few masked assignments.
"""

from __future__ import annotations

import collections
import functools

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
    """Draws the current trial of an :class:`~alchemy_gym.core.game.AlchemyGame` at a fixed size, as a scene
    without text (our server's ``RGB_INTERLEAVED``): a dark cauldron at the top, one row of up to 3
    stones, two rows of 6 potions; used or empty slots are left blank."""

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


# --------------------------------------------------------------------------- text

#: The built-in 5×7 bitmap font (upper case, digits, a little punctuation): each glyph is 7 rows of
#: 5 pixels, ``#`` set. Text is drawn in it so that pictures need no font files (only numpy).
_GLYPHS = {
    "0": ".###. #...# #...# #...# #...# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "####. ....# ....# .###. ....# ....# ####.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    " ": "..... ..... ..... ..... ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "/": "....# ....# ...#. ..#.. .#... #.... #....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    "'": "..#.. ..#.. .#... ..... ..... ..... .....",
    "→": "..... ..#.. ...#. ##### ...#. ..#.. .....",
}
GLYPH_WIDTH, GLYPH_HEIGHT = 5, 7
#: The characters :func:`draw_text` can write (lower case is written in upper case).
FONT_CHARACTERS = "".join(_GLYPHS)
_PUNCTUATION = "".join(c for c in FONT_CHARACTERS if not c.isalnum() and c != " ")
_FONT = {
    ch: np.array([[c == "#" for c in row] for row in rows.split()], dtype=np.bool_) for ch, rows in _GLYPHS.items()
}


def text_width(text: str, scale: int = 1) -> int:
    """Width in pixels of ``text`` drawn by :func:`draw_text` at ``scale`` (one pixel between letters)."""
    return max(len(text) * (GLYPH_WIDTH + 1) - 1, 0) * scale


@functools.lru_cache(maxsize=4096)
def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """The ``(7·scale, text_width)`` boolean mask of ``text`` in the built-in font (cached: a frame's
    labels repeat from step to step)."""
    upper = text.upper()
    missing = "".join(sorted({c for c in text if c.upper() not in _FONT}))
    if missing:
        raise ValueError(
            f"text {text!r} has characters the built-in font lacks: {missing!r}; "
            f"allowed: letters A-Z (any case), digits, space and {_PUNCTUATION}"
        )
    if not upper:
        return np.zeros((GLYPH_HEIGHT * scale, 0), dtype=np.bool_)
    gap = np.zeros((GLYPH_HEIGHT, 1), dtype=np.bool_)
    row = np.concatenate([part for ch in upper for part in (_FONT[ch], gap)][:-1], axis=1)
    mask = np.kron(row, np.ones((scale, scale), dtype=np.bool_)) if scale > 1 else row
    mask.setflags(write=False)
    return mask


@functools.lru_cache(maxsize=4096)
def _text_pixels(text: str, scale: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Rows, columns of the set pixels of ``text_mask(text, scale)``, and its height and width."""
    mask = text_mask(text, scale)
    ys, xs = np.nonzero(mask)
    return ys, xs, mask.shape[0], mask.shape[1]


def draw_text(
    image: np.ndarray, text: str, x: int, y: int, colour, scale: int = 1, align: str = "left"
) -> tuple[int, int]:
    """Write ``text`` into ``image`` (``(h, w, 3)`` uint8) with its top at row ``y``; ``align``
    (``"left"``, ``"centre"`` or ``"right"``) says whether ``x`` is its left edge, centre or right edge.
    Pixels outside the image are dropped. Returns the ``(left, right)`` columns the text spans."""
    if align not in ("left", "centre", "right"):
        raise ValueError(f"align must be 'left', 'centre' or 'right', got {align!r}")
    ys, xs, h, w = _text_pixels(text, scale)
    left = x - (w // 2 if align == "centre" else w if align == "right" else 0)
    if y >= 0 and left >= 0 and y + h <= image.shape[0] and left + w <= image.shape[1]:
        image[ys + y, xs + left] = colour
    else:  # partly outside: keep the pixels inside
        rows, cols = ys + y, xs + left
        inside = (rows >= 0) & (rows < image.shape[0]) & (cols >= 0) & (cols < image.shape[1])
        image[rows[inside], cols[inside]] = colour
    return left, left + w


# -------------------------------------------------------------------------- frames

#: Size (width, height) of a :class:`FramePainter` picture at ``scale=1``; ``scale`` multiplies both.
FRAME_SIZE = (240, 180)
#: Largest ``render_scale`` (a 1920×1440 picture).
MAX_RENDER_SCALE = 8

_HEADER_HEIGHT = 15
_HEADER_RGB = (34, 32, 40)
_HEADER_TEXT_RGB = (236, 236, 236)
_HEADER_NUMBER_RGB = (255, 214, 90)
_WOOD_RGB = (181, 142, 99)
_WOOD_DARK_RGB = (120, 90, 60)
_EMPTY_GLASS_RGB = (204, 178, 142)
_OUTLINE_RGB = (40, 30, 24)
_TAG_RGB = (40, 38, 44)
_USED_TEXT_RGB = (170, 166, 160)
_CAULDRON_RIM_RGB = (92, 92, 100)
_CAULDRON_BODY_RGB = (50, 50, 56)
_CAULDRON_INSIDE_RGB = (22, 22, 26)
_CAULDRON_TEXT_RGB = (150, 150, 156)
_STONE_CENTRE_Y = 80
_STONE_RADIUS = 20  # of the largest stone
_TAG_Y = 104  # top of the value tags
_POTION_ROWS_Y = (134, 164)  # centres of the potion bodies
_CAULDRON = (120, 33)
#: (width, height) of a stone slot's patch, its top row; the same of a potion slot, the top rows of the 2 rows.
_STONE_PATCH, _STONE_PATCH_TOP = (80, 60), 56
_POTION_PATCH, _POTION_PATCH_TOPS = (40, 29), (116, 146)


def value_rgb(value: float) -> tuple[int, int, int]:
    """Colour of a value's label: gold above 3 (the stones' +15 bonus), green positive, red negative, grey 0."""
    if value > 3:
        return (255, 206, 60)
    if value == 0:
        return (200, 200, 200)
    return (130, 224, 120) if value > 0 else (255, 120, 110)


def _signed(value: float) -> str:
    return f"{value:+g}"


def check_render_scale(name: str, value) -> int:
    """``render_scale`` checked: an int in 1..:data:`MAX_RENDER_SCALE` (pictures are ``240·s × 180·s``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an int in 1..{MAX_RENDER_SCALE} (pictures are 240·{name} × 180·{name} pixels), "
            f"got {value!r} of type {type(value).__name__}"
        )
    if not 1 <= value <= MAX_RENDER_SCALE:
        raise ValueError(
            f"{name}={value} out of range: allowed 1..{MAX_RENDER_SCALE} "
            f"(pictures are 240·{name} × 180·{name} pixels: 240×180 up to 1920×1440)"
        )
    return int(value)


class _Shape:
    """Pixels of a frame (flat indices into its ``(height * width, 3)`` view): ``paint`` gives them one colour."""

    __slots__ = ("index",)

    def __init__(self, index: np.ndarray) -> None:
        self.index = index

    def paint(self, image: np.ndarray, rgb) -> None:
        image.reshape(-1, 3)[self.index] = rgb

    def __or__(self, other: _Shape) -> _Shape:
        return _Shape(np.union1d(self.index, other.index))

    def __and__(self, other: _Shape) -> _Shape:
        return _Shape(np.intersect1d(self.index, other.index))


class _Canvas:
    """Pixel geometry of a picture (``width × height`` in ``scale=1`` units) at one scale: shapes are given
    in ``scale=1`` units."""

    def __init__(self, scale: int, width: int = FRAME_SIZE[0], height: int = FRAME_SIZE[1]) -> None:
        self.scale = scale
        self.width, self.height = width * scale, height * scale

    def blank(self, rgb) -> np.ndarray:
        """A ``(height, width, 3)`` picture of one colour."""
        image = np.empty((self.height, self.width, 3), dtype=np.uint8)
        image[:] = rgb
        return image

    def shape(self, rows: slice, cols: slice, mask: np.ndarray) -> _Shape:
        """The pixels where ``mask`` (over the box ``rows`` × ``cols``) is set."""
        ys, xs = np.nonzero(mask)
        return _Shape(((ys + rows.start) * self.width + xs + cols.start).astype(np.intp))

    def box(self, cx: float, cy: float, rx: float, ry: float):
        """Pixel slices around ``(cx, cy)`` ± ``(rx, ry)`` and the offsets (in scale-1 units) of their pixel
        centres from ``(cx, cy)``."""
        s = self.scale
        y0, y1 = max(int((cy - ry) * s) - 1, 0), min(int((cy + ry) * s) + 2, self.height)
        x0, x1 = max(int((cx - rx) * s) - 1, 0), min(int((cx + rx) * s) + 2, self.width)
        v = (np.arange(y0, y1)[:, None] + 0.5) / s - cy
        u = (np.arange(x0, x1)[None, :] + 0.5) / s - cx
        return slice(y0, y1), slice(x0, x1), u, v

    def superellipse(self, cx: float, cy: float, rx: float, ry: float, p: float = 2.0, pad: float = 0.0) -> _Shape:
        """``|u/rx|^p + |v/ry|^p <= 1`` (p = 2: an ellipse; below 1: a star), grown by ``pad``."""
        rows, cols, u, v = self.box(cx, cy, rx + pad, ry + pad)
        return self.shape(rows, cols, np.abs(u / (rx + pad)) ** p + np.abs(v / (ry + pad)) ** p <= 1.0)

    def ring(self, cx: float, cy: float, outer: float, inner: float) -> _Shape:
        """The circle of radius ``outer`` less that of radius ``inner``."""
        rows, cols, u, v = self.box(cx, cy, outer, outer)
        d2 = u * u + v * v
        return self.shape(rows, cols, (d2 <= outer * outer) & (d2 > inner * inner))

    def rounded_rect(self, cx: float, cy: float, rx: float, ry: float, r: float) -> _Shape:
        """A rectangle ``±rx × ±ry`` with corners of radius ``r``."""
        rows, cols, u, v = self.box(cx, cy, rx, ry)
        du = np.maximum(np.abs(u) - (rx - r), 0.0)
        dv = np.maximum(np.abs(v) - (ry - r), 0.0)
        return self.shape(rows, cols, du**2 + dv**2 <= r * r)


class FramePainter:
    """Pictures a person can read of an :class:`~alchemy_gym.core.game.AlchemyGame`, for
    ``render_mode="rgb_array"`` and videos: ``240·scale × 180·scale`` pixels.

    A dark strip at the top says the trial (of ``num_trials``), the step in the trial (of
    ``max_steps_per_trial``) and the reward so far in the episode. Below it, on a wooden table: the
    cauldron; the trial's stones with their perceived colour (purple / blurple / blue), size and
    roundness (a 4-point star, a rounded diamond or round), each above a tag with its value (gold
    for the +15 bonus, green positive, red negative), a used stone as an empty ring tagged
    ``USED``; two rows of 6 potions in their colours, a used potion as an empty bottle. After the
    last trial the picture shows the episode's trial rewards.

    Every kind of stone (with its value tag) and potion is drawn once into a patch of its slot, from
    precomputed masks, and letters come from a built-in 5×7 font (:func:`draw_text`): a step costs a
    copy of the last picture, the patches of the slots that changed and the labels of the strip.
    """

    def __init__(self, scale: int = 1) -> None:
        self.scale = s = check_render_scale("scale", scale)
        canvas = _Canvas(s)
        self.width, self.height = canvas.width, canvas.height
        base = np.empty((self.height, self.width, 3), dtype=np.uint8)
        base[:] = _WOOD_RGB
        base[: _HEADER_HEIGHT * s] = _HEADER_RGB
        cx, cy = _CAULDRON
        canvas.superellipse(cx, cy, 27, 15).paint(base, _OUTLINE_RGB)
        canvas.superellipse(cx, cy, 27, 15, pad=-1).paint(base, _CAULDRON_BODY_RGB)
        canvas.superellipse(cx, cy - 9, 31, 6).paint(base, _OUTLINE_RGB)
        canvas.superellipse(cx, cy - 9, 31, 6, pad=-1).paint(base, _CAULDRON_RIM_RGB)
        canvas.superellipse(cx, cy - 9, 26, 3.5).paint(base, _CAULDRON_INSIDE_RGB)
        draw_text(base, "CAULDRON", cx * s, (cy + 1) * s, _CAULDRON_TEXT_RGB, s, "centre")
        self.background = base

        # Stones and potions are pasted as patches (the slot's box of table with the item on it), drawn once
        # per kind from masks: a stone's patch holds the stone and its value tag.
        sx, sy = _STONE_PATCH
        self._stone_canvas = canvas = _Canvas(s, sx, sy)
        cx, cy = sx / 2, _STONE_CENTRE_Y - _STONE_PATCH_TOP
        self._stone_shapes = []  # [size][roundness] -> (outline, fill, highlight)
        for scale_ in STONE_SCALE:
            r = _STONE_RADIUS * scale_ / STONE_SCALE[-1]
            per_round = []
            for p in _ROUNDNESS_EXPONENT:
                fill = canvas.superellipse(cx, cy, r, r, p)
                rows, cols, u, v = canvas.box(cx, cy, r, r)
                u, v = (u + 0.3 * r) / (0.28 * r), (v + 0.35 * r) / (0.2 * r)
                spot = canvas.shape(rows, cols, u * u + v * v <= 1.0) & fill
                per_round.append((canvas.superellipse(cx, cy, r, r, p, pad=1.2), fill, spot))
            self._stone_shapes.append(per_round)
        self._stone_rgb = [_shades(rgb, 0.55, 0.45) for rgb in STONE_RGB]
        used = canvas.blank(_WOOD_RGB)
        canvas.ring(cx, cy, 12, 10.8).paint(used, _WOOD_DARK_RGB)
        self._tag(used, "USED", _USED_TEXT_RGB)
        self._stone_patches = collections.OrderedDict({"used": used, "none": canvas.blank(_WOOD_RGB)})

        px, py = _POTION_PATCH
        canvas = _Canvas(s, px, py)
        cx, cy = px / 2, _POTION_ROWS_Y[0] - _POTION_PATCH_TOPS[0]
        outline = canvas.rounded_rect(cx, cy, 9, 10, 4) | canvas.rounded_rect(cx, cy - 12, 4.2, 4, 1)
        fill = canvas.rounded_rect(cx, cy, 8, 9, 3.2) | canvas.rounded_rect(cx, cy - 12, 3.2, 3, 0.5)
        shine = canvas.rounded_rect(cx - 4.5, cy - 2, 1.0, 4.0, 1.0)
        self._potion_patches = {None: canvas.blank(_WOOD_RGB)}
        empty = canvas.blank(_WOOD_RGB)
        outline.paint(empty, _WOOD_DARK_RGB)
        fill.paint(empty, _EMPTY_GLASS_RGB)
        self._potion_patches["used"] = empty
        for index, rgb in enumerate(POTION_RGB):
            patch = canvas.blank(_WOOD_RGB)
            _, colour, light = _shades(rgb, 0.0, 0.55)
            outline.paint(patch, _OUTLINE_RGB)
            fill.paint(patch, colour)
            shine.paint(patch, light)
            self._potion_patches[index] = patch

        #: Where each slot's patch goes: the stone slots, then the potion slots.
        self._slots = [self._stone_slot(i) for i in range(MAX_STONES)] + [
            self._potion_slot(i) for i in range(MAX_POTIONS)
        ]
        self._labels: dict[tuple[str, str], np.ndarray] = {}
        self._scene: tuple | None = None  # (chemistry, stones, potions, stones per trial) of the last picture
        self._key = None
        self._last = base

    # --------------------------------------------------------------- geometry

    def stone_box(self, slot: int) -> tuple[int, int, int, int]:
        """Pixel box ``(top, left, bottom, right)`` of stone slot ``slot`` (0..2) and its value tag."""
        x = (slot + 0.5) * FRAME_SIZE[0] / MAX_STONES
        r = _STONE_RADIUS + 3
        return self._pixels(_STONE_CENTRE_Y - r, x - r - 4, _TAG_Y + 13, x + r + 4)

    def potion_box(self, slot: int) -> tuple[int, int, int, int]:
        """Pixel box ``(top, left, bottom, right)`` of potion slot ``slot`` (0..11)."""
        row, col = divmod(slot, MAX_POTIONS // 2)
        x, y = (col + 0.5) * FRAME_SIZE[0] / (MAX_POTIONS // 2), _POTION_ROWS_Y[row]
        return self._pixels(y - 18, x - 12, y + 12, x + 12)

    def _stone_slot(self, slot: int) -> tuple[slice, slice]:
        s, (w, h) = self.scale, _STONE_PATCH
        return slice(_STONE_PATCH_TOP * s, (_STONE_PATCH_TOP + h) * s), slice(slot * w * s, (slot + 1) * w * s)

    def _potion_slot(self, slot: int) -> tuple[slice, slice]:
        s, (w, h) = self.scale, _POTION_PATCH
        row, col = divmod(slot, MAX_POTIONS // 2)
        top = _POTION_PATCH_TOPS[row]
        return slice(top * s, (top + h) * s), slice(col * w * s, (col + 1) * w * s)

    def cauldron_box(self) -> tuple[int, int, int, int]:
        """Pixel box ``(top, left, bottom, right)`` of the cauldron."""
        x, y = _CAULDRON
        return self._pixels(y - 17, x - 34, y + 17, x + 34)

    def _pixels(self, top: float, left: float, bottom: float, right: float) -> tuple[int, int, int, int]:
        s = self.scale
        return (max(int(top * s), 0), max(int(left * s), 0), min(int(bottom * s), self.height),
                min(int(right * s), self.width))  # fmt: skip

    # ------------------------------------------------------------------ paint

    def paint(self, game) -> np.ndarray:
        """A read-only ``(height, width, 3)`` uint8 picture of ``game`` now (the last one when nothing changed)."""
        chemistry = game.chemistry
        trial = game.trial_number
        if chemistry is None:
            key = header = ("not started",)
        elif trial < 0:
            key = header = ("over", tuple(game.trial_rewards))
        else:
            stones, potions = game.stones, game.potions
            header = (trial, game.num_trials, game.steps_this_trial, game.max_steps_per_trial,
                      sum(game.trial_rewards))  # fmt: skip
            key = (chemistry, tuple(stones), tuple(potions), game.num_stones_per_trial, header)
        if key == self._key:
            return self._last
        if chemistry is None or trial < 0:
            image = self._special_scene(header)
            self._scene = None
        else:
            scene = key[:4]
            last = self._scene
            if last is not None and last[0] == chemistry and last[3] == scene[3]:
                # the last picture, with the slots whose item changed pasted over it
                image = self._last.copy()
                rows = _HEADER_HEIGHT * self.scale
                image[:rows] = self.background[:rows]  # (a copy: filling with a colour is 40 times slower)
                items = scene[1] + scene[2]
                changed = [i for i, (new, old) in enumerate(zip(items, last[1] + last[2])) if new != old]
            else:
                image = self.background.copy()
                changed = range(MAX_STONES + MAX_POTIONS)
            for i in changed:
                image[self._slots[i]] = self._slot_patch(game, i, scene)
            self._scene = scene
        self._paint_header(image, header)
        image.setflags(write=False)
        self._key, self._last = key, image
        return image

    def _slot_patch(self, game, i: int, scene: tuple) -> np.ndarray:
        """The patch of slot ``i``: stone slots 0..2, then potion slots."""
        if i < MAX_STONES:
            latent = scene[1][i]
            if latent < 0:
                return self._stone_patches["used" if i < game.num_stones_per_trial else "none"]
            (colour, size, roundness), _indicator = game.perceived_stone(latent)
            return self._stone_patch(colour, size, roundness, float(game.values[latent]))
        slot = i - MAX_STONES
        latent = scene[2][slot]
        if latent < 0:
            return self._potion_patches["used" if slot < game.num_potions_per_trial else None]
        return self._potion_patches[game.perceived_potion(latent)]

    def _paint_header(self, image: np.ndarray, header: tuple) -> None:
        s = self.scale
        if header[0] == "not started":
            draw_text(image, "NOT STARTED: CALL RESET()", 5 * s, 4 * s, _HEADER_TEXT_RGB, s)
            return
        if header[0] == "over":
            draw_text(image, "EPISODE OVER", 5 * s, 4 * s, _HEADER_TEXT_RGB, s)
            total = sum(header[1])
        else:
            trial, trials, step, steps, total = header
            self._paste_label(image, "TRIAL ", f"{trial + 1}/{trials}", "left")
            self._paste_label(image, "STEP ", f"{step}/{steps}", "centre")
        self._paste_label(image, "REWARD ", _signed(total), "right")

    def _paste_label(self, image: np.ndarray, label: str, number: str, align: str) -> None:
        """``label`` then ``number`` (highlighted) in the top strip, at its left, centre or right."""
        patch = self._labels.get((label, number))
        if patch is None:
            s = self.scale
            patch = np.empty((GLYPH_HEIGHT * s, text_width(label + number, s), 3), dtype=np.uint8)
            patch[:] = _HEADER_RGB
            _, right = draw_text(patch, label, 0, 0, _HEADER_TEXT_RGB, s)
            draw_text(patch, number, right + s, 0, _HEADER_NUMBER_RGB, s)
            if len(self._labels) >= 2048:
                self._labels.clear()
            self._labels[(label, number)] = patch
        s, w = self.scale, patch.shape[1]
        left = 5 * s if align == "left" else self.width - 5 * s - w if align == "right" else (self.width - w) // 2
        image[4 * s : 4 * s + patch.shape[0], left : left + w] = patch

    def _special_scene(self, header: tuple) -> np.ndarray:
        """The table before the first episode, or with the trial rewards after the last trial."""
        image = self.background.copy()
        s = self.scale
        if header[0] == "over":
            rewards = header[1]
            half = (len(rewards) + 1) // 2
            top = 62 + max(5 - half, 0) * 7
            for trial, reward in enumerate(rewards):
                column, line = divmod(trial, half)
                x, y = (34 + 120 * column) * s, (top + 14 * line) * s
                draw_text(image, f"TRIAL {trial + 1}", x, y, _OUTLINE_RGB, s)
                image[y - 2 * s : y + 9 * s, x + 52 * s : x + 84 * s] = _TAG_RGB
                draw_text(image, _signed(reward), x + 81 * s, y, value_rgb(reward), s, "right")
        return image

    def _stone_patch(self, colour: int, size: int, roundness: int, value: float) -> np.ndarray:
        """The patch of a stone slot holding this stone (cached, the 64 last used)."""
        key = (colour, size, roundness, value)
        patches = self._stone_patches
        patch = patches.get(key)
        if patch is not None:
            patches.move_to_end(key)
            return patch
        patch = self._stone_canvas.blank(_WOOD_RGB)
        outline, fill, spot = self._stone_shapes[size + 1][roundness + 1]
        dark, mid, light = self._stone_rgb[colour + 1]
        outline.paint(patch, dark)
        fill.paint(patch, mid)
        spot.paint(patch, light)
        self._tag(patch, _signed(value), value_rgb(value))
        patches[key] = patch
        if len(patches) > 66:  # the 64 last stones, "used" and "none"
            oldest = next(k for k in patches if k not in ("used", "none"))
            del patches[oldest]
        return patch

    def _tag(self, patch: np.ndarray, text: str, rgb) -> None:
        """A dark tag with ``text`` at the bottom centre of a stone patch."""
        s = self.scale
        x, top = patch.shape[1] // 2, (_TAG_Y - _STONE_PATCH_TOP) * s
        half = text_width(text, s) // 2 + 3 * s
        patch[top : top + 11 * s, max(x - half, 0) : x + half] = _TAG_RGB
        draw_text(patch, text, x, top + 2 * s, rgb, s, "centre")


def _shades(rgb, dark: float, light: float) -> tuple[tuple[int, ...], ...]:
    """(darker, the colour, lighter) of an RGB colour in 0..1, as uint8 triples."""
    c = np.asarray(rgb, dtype=np.float64)
    return tuple(tuple(int(round(v * 255)) for v in shade) for shade in (c * dark, c, c + (1 - c) * light))
