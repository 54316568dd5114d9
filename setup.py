"""Build of the optional C extensions; all metadata is in pyproject.toml.

Two optional C extensions: the game kernel (``alchemy_gym.core._kernel``; without it the game runs on its numpy
backend, with the same results) and the ideal observer's search (``alchemy_gym.agents._search``; without it the
ideal-observer agents raise ``KernelMissingError`` saying how to get it). Without a compiler both are skipped
(``optional=True``) and everything else works. Each includes a header of the game's numbers generated from the
core's description (``python scripts/headers.py``; a test checks that they are current).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class _BuildExt(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                # no fused multiply-adds: the kernels' sums must round the same on every build
                ext.extra_compile_args = ext.extra_compile_args + ["-ffp-contract=off"]
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "alchemy_gym.agents._search",
            ["alchemy_gym/agents/_search.c"],
            depends=["alchemy_gym/agents/_search_spec.h"],
            optional=True,
            extra_compile_args=["-O3"],
        ),
        Extension(
            "alchemy_gym.core._kernel",
            ["alchemy_gym/core/_kernel.c"],
            depends=["alchemy_gym/core/_spec.h"],
            optional=True,
            extra_compile_args=["-O3"],
        ),
    ],
    cmdclass={"build_ext": _BuildExt},
)
