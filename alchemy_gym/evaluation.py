"""``alchemy-gym evaluate``: run agents on a symbolic level and report reward per trial and per episode.

Episodes run on the core game (no Gymnasium overhead), optionally in worker
processes or on a Ray cluster; every episode is seeded by its index, so local
workers, Ray and a single process give the same results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from alchemy_gym.agents import AGENT_NAMES, Agent, make_agent, run_episode
from alchemy_gym.levels import (
    EVALUATION_PREFIX,
    NUM_EVALUATION_EPISODES,
    Level,
    parse_evaluation_name,
    symbolic_level,
)
from alchemy_gym.usage import SEED_MAX, ArgumentParser, UsageError, attach_dash_values, integer, seed

DEFAULT_RANDOM_EPISODES = 100


def resolve_level(level: str) -> Level:
    """The symbolic :class:`~alchemy_gym.levels.Level` a symbolic Gymnasium ID or dm_alchemy level name plays
    (``ValueError`` if unknown); ``alchemy/evaluation_episodes/i`` is the evaluation level (its episode:
    :func:`~alchemy_gym.levels.parse_evaluation_name`)."""
    return symbolic_level(level)


#: Most episodes one run of a randomly generated level may ask for (episode ``i`` is seeded by ``i``).
MAX_RANDOM_EPISODES = 10_000_000

EPISODES_HELP = (
    "episodes to play: N (the first N: 0..N-1) or a Python slice START:STOP[:STEP] of the level's episodes "
    "(parts may be empty; negative START/STOP count from the end, e.g. -10: for the last 10). Default: all "
    f"1000 evaluation episodes, or the first {DEFAULT_RANDOM_EPISODES} of a random level (which has no end: "
    "there START:STOP must be non-negative, STOP given, STEP positive)"
)


def parse_episodes(text: str | None, level: Level, single_episode: int | None = None) -> list[int]:
    """Episode indices from ``--episodes`` (see :data:`EPISODES_HELP`); ``ValueError`` naming what is allowed.

    The accepted forms: ``N`` with ``1 <= N <= count`` (the first N), and ``START:STOP`` or ``START:STOP:STEP``
    with Python's slice meaning over the level's episodes ``0..count-1``, where START and STOP, when given, lie
    in ``-count..count`` and STEP is not 0. A random level (no count) takes non-negative START and STOP,
    STOP given, positive STEP, at most :data:`MAX_RANDOM_EPISODES` episodes. ``single_episode``: the one
    evaluation episode ``--level alchemy/evaluation_episodes/i`` names (``--episodes`` must then be absent).
    """
    total = NUM_EVALUATION_EPISODES if level.is_evaluation else None
    if single_episode is not None:
        if text is not None:
            raise ValueError(
                f"the level names one evaluation episode ({single_episode}): drop --episodes, or use "
                f"--level {EVALUATION_PREFIX} --episodes START:STOP"
            )
        return [single_episode]
    if text is None:
        return list(range(total if total is not None else DEFAULT_RANDOM_EPISODES))
    text = text.strip()
    if total is not None:
        forms = f"N from 1 to {total}, or START:STOP[:STEP] with START and STOP from -{total} to {total}"
    else:
        forms = f"N from 1 to {MAX_RANDOM_EPISODES:,}, or START:STOP[:STEP] with 0 <= START < STOP and STEP >= 1"
    parts = text.split(":")
    try:
        values = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        values = None
    if values is None or len(values) > 3 or (len(values) == 1 and values[0] is None):
        raise ValueError(f"--episodes {text!r} is not N or START:STOP[:STEP]: allowed {forms}")
    if len(values) == 1:
        count = values[0]
        limit = total if total is not None else MAX_RANDOM_EPISODES
        if not 1 <= count <= limit:
            hint = f" (for the last {-count} use --episodes={count}:)" if count < 0 and total is not None else ""
            raise ValueError(f"--episodes {text} is out of range; allowed {forms}{hint}")
        return list(range(count))
    start, stop, step = (values + [None])[:3]
    if step == 0:
        raise ValueError(f"--episodes {text!r}: the step cannot be 0; allowed {forms}")
    if total is not None:
        for name, value in (("START", start), ("STOP", stop)):
            if value is not None and not -total <= value <= total:
                raise ValueError(
                    f"--episodes {text!r}: {name} {value} is beyond the level's {total} episodes; allowed {forms}"
                )
        indices = list(range(total))[slice(start, stop, step)]
    else:
        if stop is None or (start or 0) < 0 or stop < 0 or (step or 1) < 0:
            raise ValueError(f"--episodes {text!r}: a random level has no last episode; allowed {forms}")
        indices = range(start or 0, stop, step or 1)
        if stop > SEED_MAX + 1:
            raise ValueError(
                f"--episodes {text!r}: episode indices of a random level end at {SEED_MAX}; allowed {forms}"
            )
        if len(indices) > MAX_RANDOM_EPISODES:
            raise ValueError(f"--episodes {text!r} selects {len(indices):,} episodes; allowed {forms}")
        indices = list(indices)
    if not indices:
        raise ValueError(f"--episodes {text!r} selects no episodes; allowed {forms}")
    return indices


# ----------------------------------------------------------------- running


_WORKER_CACHE: dict = {}


def _agent_for(spec: str, level: Level, seed: int) -> Agent:
    key = (spec, level, seed)
    agent = _WORKER_CACHE.get(key)
    if agent is None:
        agent = _WORKER_CACHE[key] = make_agent(spec, level.prior, seed=seed)
    return agent


def run_episodes(spec: str, level: Level, indices: Sequence[int], seed: int) -> list[tuple[int, list[float]]]:
    """Play the given episodes with a fresh game; returns ``(index, trial rewards)`` pairs.

    Evaluation episode ``i`` is the fixed episode ``i``; episode ``i`` of a sampled level is drawn
    from ``RandomState([seed, i])``, so every episode is the same whichever worker plays it.
    """
    from alchemy_gym.core.episodes import EpisodeSource
    from alchemy_gym.core.game import AlchemyGame
    from alchemy_gym.data import evaluation_source

    agent = _agent_for(spec, level, seed)
    source = evaluation_source() if level.is_evaluation else EpisodeSource.sampled(level.name)
    game = AlchemyGame(source=source)
    out = []
    for i in indices:
        if level.is_evaluation:
            game.new_episode(i)
        else:
            game.seed(np.random.RandomState([seed & 0xFFFFFFFF, i]))
            game.new_episode()
        out.append((i, run_episode(agent, game, i)))
    return out


def _run_chunk(args) -> list[tuple[int, list[float]]]:
    spec, level, indices, seed = args
    return run_episodes(spec, level, indices, seed)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[i : i + size]) for i in range(0, len(indices), size)]


def evaluate(
    spec: str,
    level: Level,
    indices: Sequence[int],
    *,
    seed: int = 0,
    workers: int = 1,
    ray_address: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[int, list[float]]:
    """Trial rewards of ``spec`` on the episodes ``indices``; ``progress(n)`` is called as episodes finish."""
    results: dict[int, list[float]] = {}
    chunk = 1 if spec in ("ideal-observer", "ideal-explorer", "search-oracle") else 20
    tasks = [(spec, level, c, seed) for c in _chunks(list(indices), chunk)]

    def collect(part):
        for i, rewards in part:
            results[i] = rewards
        if progress is not None:
            progress(len(part))

    if ray_address is not None:
        _run_ray(tasks, ray_address, collect)
    elif workers <= 1:
        for task in tasks:
            collect(_run_chunk(task))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        pool = ctx.Pool(workers, initializer=_ignore_sigint)
        try:
            for part in pool.imap_unordered(_run_chunk, tasks):
                collect(part)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    return results


def ray_address_problem(address: str) -> str | None:
    """Why ``--ray ADDRESS`` cannot work, checked in a few seconds before any work (``None``: it can).

    ``local`` starts a cluster in this process and ``auto`` lets Ray find one; any other address
    (``host:port`` of a head node, or ``ray://host:port`` of its client server) must accept a TCP connection.
    """
    import socket

    if address in ("local", "auto"):
        return None
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return (
            f"--ray {address!r}: give HOST:PORT of a Ray head node, ray://HOST:PORT, auto, or nothing (a local cluster)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as exc:
        return (
            f"--ray {address!r}: no Ray cluster answers there ({exc}); start one with `ray start --head` "
            "or omit ADDRESS"
        )


def _run_ray(tasks, address: str, collect) -> None:
    try:
        import ray
    except ImportError:
        raise SystemExit("--ray needs Ray: pip install 'alchemy-gym[ray]' (or pip install 'ray[default]')") from None
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as e:
            raise UsageError(f"--ray {address}: {e}; start a cluster with `ray start --head` or omit ADDRESS") from None
        started = True
    remote = ray.remote(_run_chunk)
    pending = [remote.remote(task) for task in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                collect(ray.get(ref))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------- report


@dataclass
class AgentResult:
    agent: str
    level: str
    episodes: list[int]
    trial_rewards: np.ndarray  # (episodes, trials)
    extra: dict = field(default_factory=dict)

    @property
    def totals(self) -> np.ndarray:
        return self.trial_rewards.sum(axis=1)

    @staticmethod
    def _se(values: np.ndarray) -> float:
        return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0

    def trial_stats(self) -> list[tuple[float, float]]:
        return [(float(col.mean()), self._se(col)) for col in self.trial_rewards.T]

    def to_json(self) -> dict:
        return {
            "agent": self.agent,
            "level": self.level,
            "episodes": [
                {"episode": int(i), "trial_rewards": [float(r) for r in row]}
                for i, row in zip(self.episodes, self.trial_rewards)
            ],
            "mean": float(self.totals.mean()),
            "se": self._se(self.totals),
            "trial_means": [m for m, _ in self.trial_stats()],
            "trial_ses": [s for _, s in self.trial_stats()],
        } | self.extra


def format_table(results: Sequence[AgentResult]) -> str:
    """Mean ± SE per trial and per episode, one column per agent."""
    header = ["trial"] + [r.agent for r in results]
    rows = [header]
    num_trials = max(r.trial_rewards.shape[1] for r in results)
    for t in range(num_trials):
        row = [str(t + 1)]
        for r in results:
            stats = r.trial_stats()
            row.append(f"{stats[t][0]:.2f} ± {stats[t][1]:.2f}" if t < len(stats) else "-")
        rows.append(row)
    rows.append(["episode"] + [f"{r.totals.mean():.2f} ± {AgentResult._se(r.totals):.2f}" for r in results])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(results: Sequence[AgentResult], path: str) -> None:
    """Reward per trial (mean ± SE) of each agent, like the Alchemy paper's figure."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'alchemy-gym[plot]'") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        stats = r.trial_stats()
        trials = np.arange(1, len(stats) + 1)
        means = np.array([m for m, _ in stats])
        ses = np.array([s for _, s in stats])
        ax.errorbar(trials, means, yerr=ses, marker="o", capsize=3, label=r.agent)
    ax.set_xlabel("trial")
    ax.set_ylabel("reward per trial")
    ax.set_xticks(range(1, max(r.trial_rewards.shape[1] for r in results) + 1))
    ax.set_title(f"{results[0].level} ({len(results[0].episodes)} episodes)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------- CLI


def _check_agent(spec: str, level: Level, indices: Sequence[int]) -> None:
    """Fail before any work if the agent cannot play these episodes."""
    if spec.startswith("replay:"):
        if not level.is_evaluation:
            raise ValueError(
                f"{spec} replays recorded evaluation episodes: use --level {EVALUATION_PREFIX} (got {level.name})"
            )
        agent = make_agent(spec)
        n, trials = agent.events.shape[:2]
        if max(indices) >= n:
            raise ValueError(
                f"{spec} holds {n} episodes but episodes up to {max(indices)} were asked for: allowed --episodes 0:{n}"
            )
        if trials > 10:
            raise ValueError(f"{spec} has {trials} trials per episode; the evaluation episodes have 10")
        return
    make_agent(spec, level.prior)  # validates the name


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="alchemy-gym evaluate",
        description="Evaluate agents on symbolic Alchemy and report mean ± SE reward per trial and per episode.",
    )
    parser.add_argument(
        "--agent",
        action="append",
        metavar="AGENT",
        help=f"{', '.join(AGENT_NAMES)} or replay:NAME_OR_PATH (repeat for several agents; default ideal-observer)",
    )
    parser.add_argument(
        "--level",
        default=EVALUATION_PREFIX,
        help=f"symbolic Gymnasium ID or dm_alchemy level name (default {EVALUATION_PREFIX}: the 1000 fixed episodes)",
    )
    parser.add_argument("--episodes", metavar="N|START:STOP[:STEP]", help=EPISODES_HELP)
    parser.add_argument("--workers", type=integer(1), default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument(
        "--seed", type=seed, default=0, help=f"seed of random levels and the random bot, 0..{SEED_MAX} (default 0)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the table")
    parser.add_argument("--plot", metavar="FILE.png", help="save a plot of reward per trial (needs matplotlib)")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run episodes on a Ray cluster (a local one without ADDRESS); needs alchemy-gym[ray]",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``alchemy-gym evaluate``."""
    parser = build_parser()
    args = parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else argv, ["--episodes"]))
    agents = args.agent or ["ideal-observer"]
    from alchemy_gym.agents.ideal_observer import KernelMissingError

    try:
        level = resolve_level(args.level)
        indices = parse_episodes(args.episodes, level, parse_evaluation_name(args.level))
        for spec in agents:
            _check_agent(spec, level, indices)
    except (ValueError, FileNotFoundError, KernelMissingError) as e:
        parser.error(str(e))
    if args.ray is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            parser.error("--ray needs Ray: pip install 'alchemy-gym[ray]'")
        problem = ray_address_problem(args.ray)
        if problem:
            parser.error(problem)
    if args.plot:
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            parser.error(f"--plot {args.plot!r}: cannot write in {folder!r}; allowed a file in a writable folder")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'alchemy-gym[plot]'")

    for spec in agents:
        if spec in ("ideal-observer", "ideal-explorer") and level.prior != "alchemy/all_fixed":
            if spec == "ideal-observer":
                cost = (
                    "with the C kernel that takes from under a second to about a minute per episode "
                    "(benchmarks/README.md has measured figures)"
                )
            else:  # the explorer has no bounds to prune with
                cost = (
                    "with the C kernel that takes seconds to minutes per episode (no pruning: every action is searched)"
                )
            print(
                f"note: {spec} searches each first trial (nothing known, 3 stones, 12 potions) exhaustively; "
                + cost
                + ": see benchmarks/bench_ideal_observer.py",
                file=sys.stderr,
            )
    results = []
    try:
        for spec in agents:
            results.append(_evaluate_one(spec, level, indices, args))
    except KeyboardInterrupt:
        print("interrupted: workers stopped", file=sys.stderr)
        return 130
    except UsageError as e:  # found only once the run started (a Ray cluster that does not answer)
        parser.error(str(e))
    if args.json:
        if len(results) == 1:
            print(json.dumps(results[0].to_json()))
        else:
            print(json.dumps({"results": [r.to_json() for r in results]}))
    else:
        print(f"level {level.name}, {len(indices)} episodes")
        print(format_table(results))
    if args.plot:
        plot(results, args.plot)
        if not args.json:
            print(f"plot saved to {args.plot}")
    return 0


def _evaluate_one(spec: str, level: Level, indices: Sequence[int], args) -> AgentResult:
    import time

    from tqdm.auto import tqdm

    bar = tqdm(total=len(indices), desc=spec, unit="episode", disable=args.no_progress, file=sys.stderr)
    start = time.perf_counter()
    try:
        results = evaluate(
            spec, level, indices, seed=args.seed, workers=args.workers, ray_address=args.ray, progress=bar.update
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    rows = np.array([results[i] for i in indices], dtype=np.float64)
    return AgentResult(spec, level.name, list(indices), rows, {"seconds": seconds, "workers": args.workers})


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
