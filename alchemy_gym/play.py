"""``alchemy-gym play``: play episodes with a simple baseline and print per-trial rewards."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from alchemy_gym.levels import env_id


def cash_positive_stones(obs: np.ndarray) -> int:
    """Observation-only baseline: put the first present stone whose reward indicator is positive into
    the cauldron; otherwise wait (no-op) for the trial to end. Expects the default 39-float observation."""
    stones = obs[:15].reshape(3, 5)
    for slot in range(3):
        if stones[slot, 4] == 0 and stones[slot, 3] > 0:
            return 13 * slot + 1
    return 0


def play(level: str, *, episodes: int = 3, seed: int | None = 0, render: bool = False) -> int:
    """Play ``episodes`` episodes of a symbolic level with :func:`cash_positive_stones`; prints a table."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = gym.make(env_id(level), render_mode="ansi" if render else None)
    print(f"{env.spec.id} ({level}), baseline: cash every positive stone, then wait for the next trial")
    header = "episode " + " ".join(f"{'t' + str(t):>5}" for t in range(env.unwrapped.game.num_trials)) + "   total"
    print(header)
    totals = []
    obs, _ = env.reset(seed=seed)
    for episode in range(episodes):
        terminated = False
        while not terminated:
            obs, _, terminated, _, info = env.step(cash_positive_stones(obs))
            if render:
                print(env.render())
        rewards = info["trial_rewards"]
        totals.append(sum(rewards))
        print(f"{episode:>7} " + " ".join(f"{r:>5g}" for r in rewards) + f" {totals[-1]:>7g}")
        obs, _ = env.reset()
    print(f"mean episode reward over {episodes} episodes: {np.mean(totals):.2f}")
    env.close()
    return 0
