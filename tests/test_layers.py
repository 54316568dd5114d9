"""Imports point one way: each part of the package imports only parts below it (or itself).

core, usage       the game (numpy only; checked in test_core); command-line argument handling (standard library)
levels            the table of levels and what a level name means (reads the core's rules)
data              the packaged evaluation data
render, rpc       pictures of a game; the dm_env_rpc protocol and its client side
envs, agents      the Gymnasium envs; the agents that play the game
wrappers, jax, evaluation, server, compat (dm_alchemy's API over the envs)
baselines         training scripts (JAX RL²)
play, alchemy_gym (the package: registration)
bench, cli        command-line entry points
__main__          python -m alchemy_gym
"""

from __future__ import annotations

import ast
from pathlib import Path

import alchemy_gym

PACKAGE = Path(alchemy_gym.__file__).parent
LAYERS = [
    {"alchemy_gym.core", "alchemy_gym.usage"},
    {"alchemy_gym.levels"},
    {"alchemy_gym.data"},
    {"alchemy_gym.render", "alchemy_gym.rpc"},
    {"alchemy_gym.envs", "alchemy_gym.agents"},
    {"alchemy_gym.wrappers", "alchemy_gym.jax", "alchemy_gym.evaluation", "alchemy_gym.server", "alchemy_gym.compat"},
    {"alchemy_gym.baselines"},
    {"alchemy_gym.play", "alchemy_gym"},
    {"alchemy_gym.bench", "alchemy_gym.cli"},
    {"alchemy_gym.__main__"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """The layer part of a module name: ``alchemy_gym.envs.rpc`` → ``alchemy_gym.envs``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _imports(path: Path, module: str):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = module.split(".")[: -node.level] if path.name != "__init__.py" else module.split(".")
                if path.name == "__init__.py" and node.level > 1:
                    base = base[: -(node.level - 1)]
                yield ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield node.module


def test_every_import_points_down_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_generated" in path.parts:
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        here = _part(module)
        assert here in RANK, f"{module} is in no layer: add its part to LAYERS"
        for name in _imports(path, module):
            if not name.startswith("alchemy_gym"):
                continue
            there = _part(name)
            if there != here and RANK[there] >= RANK[here]:
                wrong.append(f"{module} imports {name} ({there} is not below {here})")
    assert not wrong, "\n".join(wrong)
