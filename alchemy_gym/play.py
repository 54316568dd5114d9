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
            obs, _, terminated, _, _ = env.step(cash_positive_stones(obs))
            if render:
                print(env.render())
        rewards = env.unwrapped.episode_record().trial_rewards
        totals.append(sum(rewards))
        print(f"{episode:>7} " + " ".join(f"{r:>5g}" for r in rewards) + f" {totals[-1]:>7g}")
        obs, _ = env.reset()
    print(f"mean episode reward over {episodes} episodes: {np.mean(totals):.2f}")
    env.close()
    return 0


HUMAN_HELP = """Commands (then Enter):
  S P      put stone S into potion P      (e.g. "0 5": stone 0 into potion 5)
  S c      put stone S into the cauldron  (e.g. "2 c")
  n        wait one step (no-op)
  e        end the trial (the end-trial action, or no-ops until the trial ends)
  h        this help
  q        quit"""


def _command_action(env, command: str) -> tuple[str, int | None]:
    """``("step", action)``, ``("end", None)``, ``("help" | "quit", None)`` or ``("hint", None)`` for a command."""
    from alchemy_gym.core.game import encode_action
    from alchemy_gym.core.items import MAX_POTIONS, MAX_STONES

    words = command.lower().split()
    end_trial_action = env.unwrapped.game.end_trial_action
    if words in (["q"], ["quit"], ["exit"]):
        return "quit", None
    if words in (["h"], ["help"], ["?"]):
        return "help", None
    if words in (["n"], ["wait"]):
        return "step", encode_action(-1, -1, end_trial_action)
    if words in (["e"], ["end"]):
        return "end", None
    if len(words) == 2 and words[0].isdigit() and int(words[0]) < MAX_STONES:
        stone = int(words[0])
        if words[1] in ("c", "cauldron"):
            return "step", encode_action(stone, -1, end_trial_action)
        if words[1].isdigit() and int(words[1]) < MAX_POTIONS:
            return "step", encode_action(stone, int(words[1]), end_trial_action)
    return "hint", None


def reveal(chemistry) -> str:
    """The hidden chemistry in words: maps, rotation and the missing cube edges (§1.4, §2)."""
    from alchemy_gym.core import graphs

    missing = [f"{i}-{j}" for e, (i, j) in enumerate(graphs.CUBE_EDGES) if not chemistry.graph >> e & 1]
    return (
        f"The chemistry was: {chemistry.describe()}\n"
        f"Missing edges between latent stones: {', '.join(missing) if missing else 'none (the full cube)'}"
    )


def play_human(level: str, *, seed: int | None = None, reveal_chemistry: bool = False, input=None, output=None) -> int:
    """Play one episode of a symbolic level by typing commands (see :data:`HUMAN_HELP`).

    ``input`` / ``output`` default to the terminal; tests pass scripted lines. Unknown commands get a
    hint and nothing is stepped. Returns 0.
    """
    import sys

    from alchemy_gym.core.game import encode_action

    input = input or sys.stdin
    output = output or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=output, flush=True)

    env = gym.make(env_id(level), render_mode="ansi")
    game = env.unwrapped.game
    env.reset(seed=seed)
    say(f"Alchemy: {env.spec.id}. Turn stones into valuable ones and cash them in the cauldron.")
    say(HUMAN_HELP)
    terminated = False
    total = 0.0
    while not terminated:
        say()
        say(env.render().rstrip())
        output.write("> ")
        output.flush()
        line = input.readline()
        if not line:  # end of input
            say("\nquit")
            break
        kind, action = _command_action(env, line)
        if kind == "quit":
            break
        if kind == "help":
            say(HUMAN_HELP)
            continue
        if kind == "hint":
            say(f"unknown command {line.strip()!r}: type h for help")
            continue
        if kind == "end":
            trial = game.trial_number
            noop = encode_action(-2 if game.end_trial_action else -1, -1, game.end_trial_action)
            while not terminated and game.trial_number == trial:
                _, reward, terminated, _, _ = env.step(noop)
                total += reward
            continue
        _, reward, terminated, _, _ = env.step(action)
        total += reward
        if reward:
            say(f"reward {reward:+g}")
    if terminated:
        rewards = " ".join(f"{r:g}" for r in env.unwrapped.episode_record().trial_rewards)
        say(f"\nEpisode over: total reward {total:+g} (trial rewards {rewards})")
    else:
        say(f"Stopped with a total reward of {total:+g}")
    if reveal_chemistry:
        say(reveal(game.chemistry))
    env.close()
    return 0
