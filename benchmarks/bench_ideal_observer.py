"""Speed (and fidelity) of the ideal observer on the evaluation episodes.

    python benchmarks/bench_ideal_observer.py --episodes 0:5
    python benchmarks/bench_ideal_observer.py --episodes 0:20 --forced 1:10 --trial-timeout 60

Full mode plays whole episodes with the ideal observer and prints seconds, rewards
and search nodes per episode, seconds per episode (median, max), the projected
time of the 1000-episode evaluation on ``--cores`` cores, the peak memory, and
how many trials reproduce the published ``ideal_observer`` matrix events. The
nodes do not depend on the machine: they show whether a change of the search
changed the tree it searches.

``--forced A:B`` times only trials A..B-1, each from the published history:
before every timed trial the earlier trials replay the published events while
the observer watches (so its belief is the one the published agent had). This
isolates the cost of each trial and compares each trial's decisions with the
published ones on an equal footing.
"""

from __future__ import annotations

import argparse
import resource
import signal
import statistics
import sys
import time

import numpy as np

from alchemy_gym.agents.ideal_observer import IdealObserver, KernelMissingError
from alchemy_gym.core.game import AlchemyGame, encode_action
from alchemy_gym.data import evaluation_episodes, events_to_actions, load_agent_events


class TrialTimeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise TrialTimeout


def play_trial(agent: IdealObserver, game: AlchemyGame) -> float:
    """Play one trial; returns the seconds of its first decision."""
    trial = game.trial_number
    first = None
    while game.trial_number == trial:
        tic = time.perf_counter()
        action = agent.act(game)
        if first is None:
            first = time.perf_counter() - tic
        if action == 0 and agent.ending_trial:
            game.end_trial()
        else:
            game.step(action)
    return first or 0.0


def replay_trial(agent: IdealObserver, game: AlchemyGame, matrix: np.ndarray) -> None:
    trial = game.trial_number
    for stone, potion in events_to_actions(matrix):
        action = encode_action(stone, potion, game.end_trial_action)
        agent.follow(game, action)
        game.step(action)
    if game.trial_number == trial:
        game.end_trial()


def published_rewards(episode, matrix: np.ndarray) -> list[float]:
    """Trial rewards of the published events of one episode."""
    from alchemy_gym.agents.replay import replay_episode

    return replay_episode(AlchemyGame(), episode, matrix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", default="0:3", help="evaluation episodes START:STOP (default 0:3)")
    parser.add_argument("--forced", metavar="A:B", help="time only trials A..B-1; replay the published ones before")
    parser.add_argument("--trial-timeout", type=float, default=0, help="give up a trial after this many seconds")
    parser.add_argument("--cores", type=int, default=2, help="cores for the projection (default 2)")
    args = parser.parse_args(argv)
    start, stop = (int(x) for x in args.episodes.split(":"))
    first, last = (int(x) for x in args.forced.split(":")) if args.forced else (0, 10)
    try:
        agent = IdealObserver()
    except KernelMissingError as e:
        parser.error(str(e))
    episodes = evaluation_episodes()
    published = load_agent_events("ideal_observer")
    game = AlchemyGame()
    signal.signal(signal.SIGALRM, _alarm)
    first_decisions = []
    per_episode, per_trial, matches, compared, timeouts, rewards_equal = [], [], 0, 0, 0, 0
    totals: list[tuple[float, float]] = []  # (ours, published) per episode played in full
    all_nodes = 0
    for i in range(start, stop):
        game.start_episode(episodes[i].chemistry, items=episodes[i].trials)
        agent.reset(game, i)
        theirs = published_rewards(episodes[i], published[i])  # trial rewards of the published events
        seconds = 0.0
        nodes = 0  # nodes searched in the timed trials (the planner is replaced at each reset)
        for t in range(10):
            if not first <= t < last:
                replay_trial(agent, game, published[i, t])
                continue
            if args.trial_timeout:
                signal.setitimer(signal.ITIMER_REAL, args.trial_timeout)
            tic = time.perf_counter()
            before = agent.planner.nodes
            try:
                first_decisions.append(play_trial(agent, game))
            except TrialTimeout:
                timeouts += 1
                print(f"episode {i} trial {t}: over {args.trial_timeout:.0f} s, replaying the published trial")
                agent.reset(game, i)  # belief rebuilt below from the published events
                game.start_episode(episodes[i].chemistry, items=episodes[i].trials)
                for u in range(t + 1):
                    replay_trial(agent, game, published[i, u])
                continue
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            dt = time.perf_counter() - tic
            nodes += agent.planner.nodes - before
            if args.forced:  # back onto the published history, so every trial is compared on an equal footing
                same_reward = game.trial_rewards[t] == theirs[t]
                rewards_equal += same_reward
                mine = game.matrix_events[t].copy()
                agent.reset(game, i)
                game.start_episode(episodes[i].chemistry, items=episodes[i].trials)
                agent.reset(game, i)
                for u in range(t + 1):
                    replay_trial(agent, game, published[i, u])
            else:
                mine = game.matrix_events[t].copy()
                rewards_equal += game.trial_rewards[t] == theirs[t]
            seconds += dt
            per_trial.append(dt)
            same = bool((mine == published[i, t]).all())
            matches += same
            compared += 1
            if not same:
                print(f"episode {i} trial {t}: differs from the published events, {dt:.2f} s")
        per_episode.append(seconds)
        if not args.forced:
            totals.append((sum(game.trial_rewards), sum(theirs)))
        all_nodes += nodes
        print(
            f"episode {i}: {seconds:.2f} s, rewards {[int(r) for r in game.trial_rewards]}, nodes {nodes}", flush=True
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"trials timed: {len(per_trial)}, timeouts: {timeouts}, nodes searched: {all_nodes}")
    if per_trial:
        print(f"seconds per trial: median {statistics.median(per_trial):.3f}, max {max(per_trial):.3f}")
        fd = first_decisions
        print(f"seconds of a trial's first decision: median {statistics.median(fd):.3f}, max {max(fd):.3f}")
    if per_episode:
        med, mx, mean = statistics.median(per_episode), max(per_episode), statistics.fmean(per_episode)
        print(f"seconds per episode (trials {first}..{last - 1}): median {med:.2f}, max {mx:.2f}, mean {mean:.2f}")
        print(f"projected 1000 episodes on {args.cores} cores: {mean * 1000 / args.cores / 60:.1f} min")
    print(f"matrix events identical to the published ideal_observer: {matches}/{compared} trials")
    print(f"trial rewards equal to the published ones: {rewards_equal}/{compared} trials")
    if totals:
        mean_ours, mean_theirs = (statistics.fmean(x) for x in zip(*totals))
        same = sum(a == b for a, b in totals)
        print(
            f"episode totals: mean {mean_ours:.2f} (published ideal_observer {mean_theirs:.2f}), "
            f"equal in {same}/{len(totals)}"
        )
    print(f"peak memory: {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
