"""``alchemy-gym`` command line: levels | play | evaluate | bench | serve | build-image."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand → (module with a ``main(argv) -> int``, help)
_DELEGATED = {
    "evaluate": ("alchemy_gym.evaluation", "evaluate an agent on a symbolic level (see `evaluate --help`)"),
    "serve": ("alchemy_gym.server.service", "serve symbolic Alchemy over dm_env_rpc (see `serve --help`)"),
    "build-image": ("alchemy_gym.server.image", "build the Docker image of the dm_env_rpc server"),
    "bench": ("alchemy_gym.bench", "speed and memory benchmarks of the symbolic env"),
}


def _levels(_args) -> int:
    from alchemy_gym.levels import levels

    rows = [("dm_alchemy level", "symbolic ID", "3D ID")]
    rows += [(lv.name, lv.symbolic_id or "-", lv.rpc_id or "-") for lv in levels()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _play(args) -> int:
    from alchemy_gym.play import play, play_human

    level = args.level_name or args.level
    if args.human:
        return play_human(level, seed=args.seed, reveal_chemistry=args.reveal)
    if args.reveal:
        raise SystemExit("alchemy-gym play: --reveal goes with --human")
    return play(level, episodes=args.episodes, seed=args.seed, render=args.render)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="alchemy-gym", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("levels", help="list the levels and their Gymnasium IDs").set_defaults(func=_levels)
    p = sub.add_parser("play", help="play episodes with a simple baseline (or yourself: --human)")
    p.add_argument("level_name", nargs="?", metavar="LEVEL", help="a level name or symbolic ID (as --level)")
    p.add_argument("--level", default="alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck")
    p.add_argument("--human", action="store_true", help="play one episode yourself, typing commands")
    p.add_argument("--reveal", action="store_true", help="with --human: show the hidden chemistry at the end")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", action="store_true", help="print the trial after every step")
    p.set_defaults(func=_play)
    for name, (_module, help_text) in _DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if argv and argv[0] in _DELEGATED:
        module = importlib.import_module(_DELEGATED[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
