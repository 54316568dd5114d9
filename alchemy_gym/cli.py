"""``alchemy-gym`` command line: levels | play | evaluate | bench | serve | build-image.

Every bad input is one line on stderr (``alchemy-gym CMD: error: ...``, naming what is allowed) and exit
status 2; Ctrl-C ends any command with one line and exit status 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from alchemy_gym import __version__
from alchemy_gym.levels import DEFAULT_LEVEL
from alchemy_gym.usage import INTERRUPTED, ArgumentParser, integer, seed

# subcommand → (module with a ``main(argv) -> int``, help)
_DELEGATED = {
    "evaluate": ("alchemy_gym.evaluation", "evaluate an agent on a symbolic level (see `evaluate --help`)"),
    "serve": ("alchemy_gym.server.service", "serve symbolic Alchemy over dm_env_rpc (see `serve --help`)"),
    "build-image": ("alchemy_gym.server.image", "build the Docker image of the dm_env_rpc server"),
    "bench": ("alchemy_gym.bench", "speed and memory benchmarks of the symbolic env"),
}
DEFAULT_EPISODES = 3


def _levels(_args, _parser) -> int:
    from alchemy_gym.levels import levels

    rows = [("dm_alchemy level", "symbolic ID", "3D ID")]
    rows += [(lv.name, lv.symbolic_id or "-", lv.rpc_id or "-") for lv in levels()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _play(args, parser: argparse.ArgumentParser) -> int:
    from alchemy_gym.levels import env_id
    from alchemy_gym.play import play, play_human

    if args.level_name and args.level and args.level_name != args.level:
        parser.error(f"two levels given ({args.level_name!r} and --level {args.level!r}); allowed one")
    level = args.level_name or args.level or DEFAULT_LEVEL
    try:
        env_id(level)
    except ValueError as e:
        parser.error(f"{e}; or their symbolic IDs (`alchemy-gym levels` lists them)")
    if args.human:
        for flag, given in (("--episodes", args.episodes is not None), ("--render", args.render)):
            if given:
                parser.error(f"{flag} goes with the baseline, not --human (which plays one episode, always shown)")
        return play_human(level, seed=args.seed, reveal_chemistry=args.reveal)
    if args.reveal:
        parser.error("--reveal goes with --human")
    episodes = DEFAULT_EPISODES if args.episodes is None else args.episodes
    return play(level, episodes=episodes, seed=0 if args.seed is None else args.seed, render=args.render)


def build_parser() -> argparse.ArgumentParser:
    """The ``alchemy-gym`` parser (the delegated commands parse their own arguments)."""
    parser = ArgumentParser(prog="alchemy-gym", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"alchemy-gym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    levels = sub.add_parser("levels", help="list the levels and their Gymnasium IDs")
    levels.set_defaults(func=_levels, parser=levels)
    p = sub.add_parser(
        "play",
        help="play episodes with a simple baseline (or yourself: --human)",
        description="Play a symbolic level: the cash-positive-stones baseline, or yourself with --human.",
    )
    p.add_argument("level_name", nargs="?", metavar="LEVEL", help="a level name or symbolic ID (as --level)")
    p.add_argument(
        "--level", default=None, help=f"a level name or ID from `alchemy-gym levels` (default {DEFAULT_LEVEL})"
    )
    p.add_argument("--human", action="store_true", help="play one episode yourself, typing commands")
    p.add_argument(
        "--reveal",
        action="store_true",
        help="with --human: say why a potion had no effect, and show the hidden chemistry at the end",
    )
    p.add_argument(
        "--episodes", type=integer(1), default=None, help=f"baseline episodes to play (default {DEFAULT_EPISODES})"
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=None,
        help="seed of the level's episodes (default: 0 for the baseline; a random one, printed, with --human)",
    )
    p.add_argument("--render", action="store_true", help="print the trial after every step of the baseline")
    p.set_defaults(func=_play, parser=p)  # its errors name it: "alchemy-gym play: error: ..."
    for name, (_module, help_text) in _DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _main(argv: list[str]) -> int:
    if argv and argv[0] in _DELEGATED:
        module = importlib.import_module(_DELEGATED[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args, args.parser) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``alchemy-gym``: returns the exit status (2: bad input, 130: interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("alchemy-gym: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # the reader went away (`alchemy-gym levels | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
