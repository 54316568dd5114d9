"""The API reference's docstring rewriting (docs/griffe_docstrings.py, used by the mkdocs build)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[1] / "docs" / "griffe_docstrings.py"


@pytest.fixture(scope="module")
def extension():
    pytest.importorskip("griffe", reason="the docs extra (mkdocstrings-python) brings griffe")
    spec = importlib.util.spec_from_file_location("griffe_docstrings", EXTENSION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_literal_blocks_become_fenced_code(extension):
    text = "Importing registers every level::\n\n    import gymnasium as gym\n\n    env = 1\n\nSee the table."
    assert extension.markdown_docstring(text) == (
        "Importing registers every level:\n\n```python\nimport gymnasium as gym\n\nenv = 1\n```\n\nSee the table."
    )
    alone = "Summary.\n\n::\n\n    import jax\n\nMore."
    assert extension.markdown_docstring(alone) == "Summary.\n\n\n```python\nimport jax\n```\n\nMore."
    assert extension.markdown_docstring("C++ uses std::vector.") == "C++ uses std::vector."


def test_doctests_become_fenced_pycon(extension):
    text = "Maps a name.\n\n    >>> env_id('a')\n    'A'\n    >>> 1 + 1\n    2\n\nDone."
    assert extension.markdown_docstring(text) == (
        "Maps a name.\n\n    ```pycon\n    >>> env_id('a')\n    'A'\n    >>> 1 + 1\n    2\n    ```\n\nDone."
    )


def test_settings_fields_show_their_defaults(extension):
    import griffe

    module = griffe.visit(
        "m",
        Path("m.py"),
        'from dataclasses import dataclass\n@dataclass\nclass S:\n    level: str = setting(DEFAULT, "doc", check)\n'
        '    copy: bool = setting(True, "doc", lambda n, v: v, shown="yes")\n    plain: int = 3\n',
        extensions=griffe.load_extensions(extension.AlchemyDocstrings),
    )
    extension.AlchemyDocstrings().on_package(pkg=module)
    fields = module["S"].members
    assert [str(fields[name].value) for name in ("level", "copy", "plain")] == ["DEFAULT", "True", "3"]
