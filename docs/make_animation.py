"""Write the animated GIF of one Alchemy episode that the README and the docs home page show.

An agent (the ideal observer by default) plays one evaluation episode of the symbolic env with
``render_mode="rgb_array"``; every frame is the env's own picture with a caption line below it
saying what the last action did. Steps that change nothing (the no-ops after the last stone is
cashed) are left out, so the animation shows each trial's decisions. Needs Pillow (the ``docs``
extra) to write the GIF::

    python3 docs/make_animation.py                        # docs/images/episode.gif
    python3 docs/make_animation.py --agent search-oracle --episode 7 --scale 1 --out /tmp/a.gif
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import alchemy_gym  # noqa: F401  (registers the IDs)
from alchemy_gym.agents import AGENT_NAMES, make_agent
from alchemy_gym.core.game import slot_action
from alchemy_gym.core.items import POTION_COLOURS
from alchemy_gym.render import FramePainter, draw_text

DEFAULT_OUT = Path(__file__).resolve().parent / "images" / "episode.gif"
STONE_NAMES = ("LEFT", "MIDDLE", "RIGHT")
#: Milliseconds each kind of frame stays on screen.
ACTION_MS, TRIAL_START_MS, LAST_MS = 900, 1400, 4000
_CAPTION_RGB, _CAPTION_TEXT_RGB, _HIGHLIGHT_RGB = (20, 20, 24), (236, 236, 236), (255, 230, 40)


def caption(game, action: int, stones: list[int], potions: list[int], reward: float) -> str:
    """What ``action``, taken when the slots held ``stones`` and ``potions``, did, in a few words."""
    stone, potion = slot_action(action, game.end_trial_action)
    if stone < 0:
        return "END OF TRIAL" if stone == -2 else "WAIT"
    where = f"{STONE_NAMES[stone]} STONE"
    if potion < 0:
        return f"{where} INTO THE CAULDRON: {reward:+g}"
    colour = POTION_COLOURS[game.perceived_potion(potions[potion])].upper()
    changed = game.stones[stone] != stones[stone]
    return f"{where} + {colour} POTION: {'IT CHANGES' if changed else 'NO EFFECT'}"


def highlight(picture: np.ndarray, painter: FramePainter, action: int, end_trial_action: bool) -> np.ndarray:
    """``picture`` with frames around the stone and the potion (or the cauldron) of ``action``."""
    stone, potion = slot_action(action, end_trial_action)
    if stone < 0:
        return picture
    picture = picture.copy()
    width = max(painter.scale, 1) + 1
    boxes = [painter.stone_box(stone), painter.cauldron_box() if potion < 0 else painter.potion_box(potion)]
    for top, left, bottom, right in boxes:
        for rows, cols in (
            (slice(top, top + width), slice(left, right)),
            (slice(bottom - width, bottom), slice(left, right)),
            (slice(top, bottom), slice(left, left + width)),
            (slice(top, bottom), slice(right - width, right)),
        ):
            picture[rows, cols] = _HIGHLIGHT_RGB
    return picture


def with_caption(picture: np.ndarray, text: str, scale: int) -> np.ndarray:
    """``picture`` with a caption line below it."""
    band = np.empty((14 * scale, picture.shape[1], 3), dtype=np.uint8)
    band[:] = _CAPTION_RGB
    draw_text(band, text, picture.shape[1] // 2, 4 * scale, _CAPTION_TEXT_RGB, scale, "centre")
    return np.concatenate([picture, band])


def play(agent_name: str, episode: int, scale: int, num_trials: int = 10) -> tuple[list[np.ndarray], list[int], float]:
    """Frames and their durations (ms) of one evaluation episode played by ``agent_name``; its return."""
    env = gym.make(
        "Alchemy/SymbolicEvaluation-v0", render_mode="rgb_array", render_scale=scale, num_trials=num_trials
    ).unwrapped
    agent = make_agent(agent_name, seed=episode)
    env.reset(options={"episode": episode})
    game = env.game
    painter = FramePainter(scale)
    agent.reset(game, episode)
    frames = [with_caption(env.render(), "TRIAL 1: NEW STONES AND POTIONS", scale)]
    durations = [TRIAL_START_MS]
    terminated = False
    while not terminated:
        trial, before, potions = game.trial_number, game.stones, game.potions
        action = agent.act(game)
        _, reward, terminated, _, _ = env.step(action)
        if terminated:
            text = f"THE {agent_name.upper().replace('-', ' ')} SCORED {env.episode_return:+g}"
            frames.append(with_caption(env.render(), text, scale))
            durations.append(LAST_MS)
        elif game.trial_number != trial:
            text = f"TRIAL {game.trial_number + 1}: NEW STONES AND POTIONS"
            frames.append(with_caption(env.render(), text, scale))
            durations.append(TRIAL_START_MS)
        elif game.stones != before or game.potions != potions or reward:
            text = caption(game, int(action), before, potions, reward)
            picture = highlight(env.render(), painter, int(action), game.end_trial_action)
            frames.append(with_caption(picture, text, scale))
            durations.append(ACTION_MS)
    env.close()
    return frames, durations, env.episode_return


def write_gif(path: Path, frames: list[np.ndarray], durations: list[int]) -> None:
    """An endlessly looping GIF (Pillow stores only the part of each frame that changed)."""
    try:
        from PIL import Image
    except ImportError:
        sys.exit("writing the GIF needs Pillow: pip install 'alchemy-gym[docs]' (or pip install pillow)")
    images = [Image.fromarray(frame) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default="ideal-observer", help=f"one of {', '.join(AGENT_NAMES)}")
    parser.add_argument("--episode", type=int, default=5, help="evaluation episode 0..999 (default 5)")
    parser.add_argument("--scale", type=int, default=2, help="render_scale of the frames, 1..8 (default 2)")
    parser.add_argument("--trials", type=int, default=10, help="trials to play, 1..10 (default 10)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the GIF to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.agent not in AGENT_NAMES:
        parser.error(f"--agent {args.agent!r} is not an agent: allowed {', '.join(AGENT_NAMES)}")
    frames, durations, total = play(args.agent, args.episode, args.scale, args.trials)
    write_gif(args.out, frames, durations)
    size = args.out.stat().st_size
    print(f"{args.out}: {len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}, {size / 1e3:.0f} kB; "
          f"{args.agent} scored {total:+g} on evaluation episode {args.episode}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
