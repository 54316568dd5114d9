"""Rendering of a symbolic Alchemy trial: text (``render_mode="ansi"``) and pictures (``"rgb_array"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alchemy_gym.core.items import POTION_COLOURS, STONE_FEATURE_NAMES

# TODO(integration): the picture painter moves here from alchemy_gym.rpc.picture
from alchemy_gym.rpc.picture import TrialPainter  # noqa: E402,F401

if TYPE_CHECKING:
    from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv


def describe_stone(coords, reward_indicator: int, value: float) -> str:
    """``blue large round (indicator +1, value +1)``."""
    words = [names[c + 1] for (_, names), c in zip(STONE_FEATURE_NAMES, coords)]
    return f"{' '.join(words):<36} reward indicator {reward_indicator:+d}  value {value:+g}"


def render_ansi(env: SymbolicAlchemyEnv) -> str:
    """A readable view of the current trial: stones, potions, counters."""
    game = env.game
    if game.chemistry is None:
        return "Symbolic Alchemy: not started (call reset())\n"
    over = game.trial_number < 0
    trial = game.num_trials - 1 if over else game.trial_number
    header = (
        f"Symbolic Alchemy {env.level_name}"
        + (f" episode {env.episode_index}" if env.episode_index is not None else "")
        + f"\nTrial {trial + 1}/{game.num_trials}"
        + (" (episode over)" if over else f"  step {game.steps_this_trial}/{game.max_steps_per_trial}")
        + f"  trial reward {game.trial_rewards[trial]:+g}  episode return {env.episode_return:+g}"
        + f"  last reward {env._last_reward:+g}"
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
