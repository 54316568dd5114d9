"""``alchemy-gym play``: play episodes with a simple baseline, or yourself (``--human``), in the terminal."""

from __future__ import annotations

import secrets
import sys
from typing import TextIO

import gymnasium as gym
import numpy as np

from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.game import AlchemyGame, encode_action, slot_action
from alchemy_gym.core.items import (
    MAX_POTIONS,
    MAX_STONES,
    NUM_POTION_TYPES,
    PERCEIVED_POTION,
    PERCEIVED_STONE,
    POTION_COLOURS,
    POTION_DIM_DIR,
    STONE_COORDS,
    STONE_FEATURE_NAMES,
    STONE_REWARD_INDICATOR,
)
from alchemy_gym.levels import NUM_EVALUATION_EPISODES, env_id, find_level, parse_evaluation_name
from alchemy_gym.usage import INTERRUPTED

#: ``--human`` without ``--seed`` draws a seed below this (short enough to type again).
RANDOM_SEED_LIMIT = 1_000_000


def cash_positive_stones(obs: np.ndarray) -> int:
    """Observation-only baseline: put the first present stone whose reward indicator is positive into
    the cauldron; otherwise wait (no-op) for the trial to end. Expects the default 39-float observation."""
    stones = obs[:15].reshape(3, 5)
    for slot in range(3):
        if stones[slot, 4] == 0 and stones[slot, 3] > 0:
            return 13 * slot + 1
    return 0


def play(
    level: str, *, episodes: int = 3, seed: int | None = 0, render: bool = False, episode: int | None = None
) -> int:
    """Play ``episodes`` episodes of a symbolic level with :func:`cash_positive_stones`; prints a table.

    ``episode``: on the evaluation level, the first evaluation episode to play (then the next ones); by default
    the one ``alchemy/evaluation_episodes/i`` names, else 0.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if episode is None:
        episode = parse_evaluation_name(level)
    env = gym.make(env_id(level), render_mode="ansi" if render else None)
    print(f"{env.spec.id} ({level}), baseline: cash every positive stone, then wait for the next trial")
    header = "episode " + " ".join(f"{'t' + str(t):>5}" for t in range(env.unwrapped.game.num_trials)) + "   total"
    print(header)
    totals = []
    obs, _ = env.reset(seed=seed, options=None if episode is None else {"episode": episode})
    for episode in range(episodes):
        terminated = False
        while not terminated:
            obs, _, terminated, _, _ = env.step(cash_positive_stones(obs))
            if render:
                print(env.render())
        rewards = env.unwrapped.episode_record().trial_rewards
        totals.append(sum(rewards))
        index = env.unwrapped.game.episode_index  # the evaluation episode, else the count
        print(
            f"{episode if index is None else index:>7} " + " ".join(f"{r:>5g}" for r in rewards) + f" {totals[-1]:>7g}"
        )
        obs, _ = env.reset()
    print(f"mean episode reward over {episodes} episodes: {np.mean(totals):.2f}")
    env.close()
    return 0


# --------------------------------------------------------------------------- the chemistry in the player's terms


def stone_look(chemistry: Chemistry, latent: int) -> str:
    """What a latent stone looks like under a chemistry, e.g. ``"blue large round"``."""
    coords = PERCEIVED_STONE[chemistry.stone_map, chemistry.rotation, latent]
    return " ".join(names[int(c) + 1] for (_, names), c in zip(STONE_FEATURE_NAMES, coords))


def _potion_colour(chemistry: Chemistry, latent_potion: int) -> str:
    return POTION_COLOURS[int(PERCEIVED_POTION[chemistry.potion_map, latent_potion])]


def potion_effect(chemistry: Chemistry, colour: str) -> tuple[str, int]:
    """What a potion of ``colour`` does to a stone it moves: ``("size towards small", -2)``.

    The words name each stone feature that changes and the end it moves towards (under a rotation a potion
    changes two features at once); the number is the change of the stone's reward indicator. Read from the
    core's tables: the stone before and after the potion, as the player sees them.
    """
    latent = int(np.flatnonzero(PERCEIVED_POTION[chemistry.potion_map] == POTION_COLOURS.index(colour))[0])
    dim, direction = POTION_DIM_DIR[latent]
    before = next(s for s in range(len(STONE_COORDS)) if STONE_COORDS[s][dim] == -direction)
    after = graphs.TRANSITIONS[graphs.FULL_GRAPH, NUM_POTION_TYPES * before + latent]
    table = PERCEIVED_STONE[chemistry.stone_map, chemistry.rotation]
    change = table[after].astype(int) - table[before].astype(int)
    words = [
        f"{feature} towards {names[2 if d > 0 else 0]}" for (feature, names), d in zip(STONE_FEATURE_NAMES, change) if d
    ]
    return " and ".join(words), int(STONE_REWARD_INDICATOR[after]) - int(STONE_REWARD_INDICATOR[before])


def missing_paths(chemistry: Chemistry) -> list[str]:
    """The cube edges missing from the chemistry's graph, as stone looks and the potion pair that fails there."""
    out = []
    for e, (i, j) in enumerate(graphs.CUBE_EDGES):
        if chemistry.graph >> e & 1:
            continue
        axis = graphs.EDGE_AXIS[e]
        pair = "/".join(sorted((_potion_colour(chemistry, 2 * axis + k) for k in (0, 1)), key=POTION_COLOURS.index))
        ends = [f"{stone_look(chemistry, s)} ({int(STONE_REWARD_INDICATOR[s]):+d})" for s in (i, j)]
        out.append(f"{ends[0]} <-> {ends[1]} ({pair} do nothing between them)")
    return out


def reveal(chemistry: Chemistry) -> str:
    """The hidden chemistry in the player's terms: what each potion colour does, the best and worst stones'
    looks, and the missing paths of the cube (stone looks between which a potion pair does nothing)."""
    lines = ["The chemistry of this episode:"]
    for colour in POTION_COLOURS:
        words, change = potion_effect(chemistry, colour)
        lines.append(f"  {colour:<10} moves a stone's {words} (reward indicator {change:+d})")
    best = int(np.argmax(STONE_REWARD_INDICATOR))
    worst = int(np.argmin(STONE_REWARD_INDICATOR))
    lines.append(
        f"  The most valuable stone looks {stone_look(chemistry, best)}; the least, {stone_look(chemistry, worst)}."
    )
    missing = missing_paths(chemistry)
    if missing:
        lines.append(f"  Missing paths ({len(missing)} of {graphs.NUM_EDGES}; potions cannot move a stone along them):")
        lines += [f"    {m}" for m in missing]
    else:
        lines.append(f"  No missing paths: all {graphs.NUM_EDGES} edges of the cube are there.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- a human player


HUMAN_HELP = """Commands (then Enter):
  S P      put stone S into potion P      (e.g. "0 5": stone 0 into potion 5)
  S c      put stone S into the cauldron  (e.g. "2 c")
  n        wait one step (no-op)
  e        end the trial (the end-trial action, or no-ops until the trial ends)
  h        this help
  q        quit (Ctrl-C or Ctrl-D too)
A command naming a used stone or an empty potion slot is refused (no step is taken)."""


def _command_action(env, command: str) -> tuple[str, int | None]:
    """``("step", action)``, ``("end", None)``, ``("help" | "quit", None)`` or ``("hint", None)`` for a command."""
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


def refusal(game: AlchemyGame, action: int) -> str | None:
    """Why an action would do nothing because it names a used or empty slot (``None``: it names items that are
    there). The game's own state says which slots hold items."""
    stone, potion = slot_action(action, game.end_trial_action)
    if stone < 0:
        return None
    if game.stones[stone] < 0:
        if stone >= game.num_stones_per_trial:
            return f"there is no stone {stone}: this level has stones 0..{game.num_stones_per_trial - 1}"
        return f"stone {stone} is already used (it went into the cauldron)"
    if potion >= 0 and game.potions[potion] < 0:
        if potion >= game.num_potions_per_trial:
            return f"there is no potion {potion}: this level has potions 0..{game.num_potions_per_trial - 1}"
        return f"potion {potion} is already used up"
    return None


def no_effect(game: AlchemyGame, action: int, *, reveal_cause: bool) -> str | None:
    """Why putting a stone into a potion will not change it (``None``: it will, or the action is no dip).

    Read before the step from the chemistry's transition table (and the full cube's, to tell the two causes
    apart). Without ``reveal_cause`` the message states the rule only: which cause holds is what the player is
    there to find out.
    """
    stone_slot, potion_slot = slot_action(action, game.end_trial_action)
    if stone_slot < 0 or potion_slot < 0:
        return None
    stone, potion = game.stones[stone_slot], game.potions[potion_slot]
    if stone < 0 or potion < 0:
        return None
    index = NUM_POTION_TYPES * stone + potion
    if game.transitions[index] != stone:
        return None
    chemistry = game.chemistry
    colour = _potion_colour(chemistry, potion)
    text = f"stone {stone_slot} did not change; the {colour} potion is used up all the same."
    if not reveal_cause:
        return (
            text + " A potion leaves a stone as it is when the stone is already at the end the potion moves it "
            "towards, or when that path is missing in this episode's chemistry."
        )
    target = int(graphs.TRANSITIONS[graphs.FULL_GRAPH, index])
    if target == stone:
        words, _ = potion_effect(chemistry, colour)
        return text + f" {colour.capitalize()} moves a stone's {words}, and this stone is already at that end."
    return text + (
        f" The path from {stone_look(chemistry, stone)} to {stone_look(chemistry, target)} is missing in this "
        "episode's chemistry."
    )


def play_human(
    level: str,
    *,
    seed: int | None = None,
    episode: int | None = None,
    reveal_chemistry: bool = False,
    input: TextIO | None = None,
    output: TextIO | None = None,
) -> int:
    """Play one episode of a symbolic level by typing commands (see :data:`HUMAN_HELP`).

    Without ``seed`` a random one is drawn and printed, so that the episode can be played again; on the
    evaluation level ``episode`` picks the evaluation episode (a random one if not given). Each trial's end is
    announced with its reward; a command naming a used or empty slot is refused without a step; a potion that
    leaves its stone unchanged is explained (``reveal_chemistry``: with its cause, and the chemistry is shown
    at the end). ``input`` / ``output`` default to the terminal; tests pass scripted lines.

    Returns 0 when the episode ends or the player quits (``q`` or end of input), 130 on Ctrl-C.
    """
    input = input or sys.stdin
    output = output or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=output, flush=True)

    evaluation = find_level(level).is_evaluation
    env = gym.make(env_id(level), render_mode="ansi")
    game = env.unwrapped.game
    if evaluation:
        if episode is None:
            episode = parse_evaluation_name(level)  # alchemy/evaluation_episodes/i
        if episode is None:
            episode = secrets.randbelow(NUM_EVALUATION_EPISODES)
        env.reset(seed=seed, options={"episode": episode})
        again = f"alchemy-gym play alchemy/evaluation_episodes/{episode} --human"
        start = f"Evaluation episode {episode} (play it again: {again})"
    else:
        if seed is None:
            seed = secrets.randbelow(RANDOM_SEED_LIMIT)
        env.reset(seed=seed)
        start = f"Seed {seed} (play this episode again with --seed {seed})"
    say(f"Alchemy: {env.spec.id}. Turn stones into valuable ones and cash them in the cauldron.")
    say(start)
    say(HUMAN_HELP)
    terminated = False
    total = 0.0
    try:
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
            trial = game.trial_number
            if kind == "end":
                noop = encode_action(-2 if game.end_trial_action else -1, -1, game.end_trial_action)
                while not terminated and game.trial_number == trial:
                    _, reward, terminated, _, _ = env.step(noop)
                    total += reward
            else:
                refused = refusal(game, action)
                if refused:
                    say(f"{refused}: nothing done, no step taken")
                    continue
                explanation = no_effect(game, action, reveal_cause=reveal_chemistry)
                _, reward, terminated, _, _ = env.step(action)
                total += reward
                if reward:
                    say(f"reward {reward:+g}")
                if explanation:
                    say(f"Nothing happened: {explanation}")
            if terminated or game.trial_number != trial:
                say(
                    f"Trial {trial + 1} of {game.num_trials} is over: trial reward {game.trial_rewards[trial]:+g}, "
                    f"total {total:+g}."
                    + ("" if terminated else f" Trial {trial + 2} starts with new stones and potions.")
                )
    except KeyboardInterrupt:
        say(f"\ninterrupted: stopped with a total reward of {total:+g}")
        env.close()
        return INTERRUPTED
    if terminated:
        rewards = " ".join(f"{r:g}" for r in game.trial_rewards)
        say(f"\nEpisode over: total reward {total:+g} (trial rewards {rewards})")
    else:
        say(f"Stopped with a total reward of {total:+g}")
    if reveal_chemistry:
        say(reveal(game.chemistry))
    env.close()
    return 0
