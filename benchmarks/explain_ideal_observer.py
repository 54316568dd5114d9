"""Why the ideal observer's first-trial decisions differ from dm_alchemy's published ones.

    python benchmarks/explain_ideal_observer.py 1 4 5 7 22 105

Follows the published ``ideal_observer`` events of trial 0 of each given evaluation episode. At every
decision it asks our planner for its best action and, where the published action differs, for the exact
value of every action (``Planner.action_values``), then classifies the published action:

* ``exact tie``: same expected reward and same expected number of potions (the order of actions decides);
* ``tie, published expects more potions``: same expected reward (within 1e-9 relative); we prefer fewer
  potions, as the spec's objective ``(expected reward, -expected actions)`` says. dm_alchemy compares those
  tuples as plain floats, so where two expected rewards are equal in exact arithmetic, rounding in their last
  bits can decide before the potion count does;
* ``published lower``: the published action is worse in expected reward;
* ``PUBLISHED BETTER``: our search missed a better action (a bug).

Prints one line per differing decision and the counts. Asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import sys

from alchemy_gym.agents.ideal_observer import IdealObserver, KernelMissingError, follow_trial, require_kernel
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.data import evaluation_episodes, events_to_actions, load_agent_events


def classify(best: tuple[float, float], published: tuple[float, float]) -> str:
    (bv, bd), (pv, pd) = best, published
    if abs(pv - bv) <= 1e-9 * max(1.0, abs(bv)):
        if abs(pd - bd) <= 1e-9:
            return "exact tie"
        return "tie, published expects more potions" if pd > bd else "tie, published expects fewer potions"
    return "published lower" if pv < bv else "PUBLISHED BETTER"


def explain_episode(i: int, episodes, published, kinds: collections.Counter) -> None:
    game = AlchemyGame()
    game.start_episode(episodes[i].chemistry, items=episodes[i].trials)
    agent = IdealObserver()
    agent.reset(game, i)
    for d in follow_trial(agent, game, events_to_actions(published[i, 0])):
        if d.their_value is None:
            kinds["same"] += 1
            continue
        kind = classify((d.value, d.potions), d.their_value)
        kinds[kind] += 1
        pv, pd = d.their_value
        print(
            f"episode {i}: ours {d.ours} (reward {d.value:.6f}, potions {d.potions:.4f}), "
            f"published {d.theirs} (reward {pv:.6f}, potions {pd:.4f}): {kind}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("episodes", nargs="+", type=int, help="evaluation episode indices (0..999)")
    args = parser.parse_args(argv)
    try:
        require_kernel()
    except KernelMissingError as e:
        parser.error(str(e))
    episodes, published = evaluation_episodes(), load_agent_events("ideal_observer")
    kinds: collections.Counter = collections.Counter()
    for i in args.episodes:
        if not 0 <= i < len(episodes):
            parser.error(f"episode {i} is not in 0..{len(episodes) - 1}")
        explain_episode(i, episodes, published, kinds)
    print("decisions:", dict(kinds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
