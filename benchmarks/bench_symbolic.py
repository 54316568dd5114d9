"""Symbolic env benchmark: steps/s (resets included, through gymnasium.make), replay time, memory.

Run: ``python benchmarks/bench_symbolic.py`` (same as ``alchemy-gym bench``). Prints figures; asserts nothing.
"""

import sys

from alchemy_gym.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
