"""Writes the C kernels' headers of the game's numbers from the descriptions they are compiled with.

    python scripts/headers.py

``alchemy_gym/core/_spec.h`` comes from :data:`alchemy_gym.core.spec.SPEC` (the game kernel) and
``alchemy_gym/agents/_search_spec.h`` from ``alchemy_gym.agents.ideal_observer.SEARCH_SPEC`` (the search
kernel). Run it after changing a number of the game, then rebuild the kernels; ``tests/test_spec.py``
fails while a header is not current, and a kernel built from an old one refuses the description at start.
"""

from __future__ import annotations

from pathlib import Path

from alchemy_gym.agents.ideal_observer import search_header
from alchemy_gym.core.spec import header

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"alchemy_gym/core/_spec.h": header, "alchemy_gym/agents/_search_spec.h": search_header}

if __name__ == "__main__":
    for path, make in HEADERS.items():
        (ROOT / path).write_text(make())
        print(f"wrote {path}")
