"""Build of the optional C extensions; all metadata is in pyproject.toml.

Two optional C extensions: the game kernel (``alchemy_gym.core._kernel``; without it the game runs on its numpy
backend, with the same results) and the ideal observer's search (``alchemy_gym.agents._search``; without it the
ideal-observer agents raise ``KernelMissingError`` saying how to get it). Without a compiler both are skipped
(``optional=True``) and everything else works. ``ALCHEMY_GYM_REQUIRE_EXTENSIONS=1`` makes a failed extension
fail the build instead (the release wheels are built so: a wheel without its kernels is never published).
Each includes a header of the game's numbers generated from the core's description (``python
scripts/headers.py``; a test checks that they are current).
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRED = os.environ.get("ALCHEMY_GYM_REQUIRE_EXTENSIONS", "") not in ("", "0")

#: Compile flags by compiler family. Both say the same two things: optimise, and never contract a multiply and
#: an add into one fused instruction (the kernels' sums must round the same on every build and platform).
#: MSVC: /fp:precise keeps IEEE semantics; contraction is turned off by ``#pragma fp_contract(off)`` in the
#: header forced in with /FI (older MSVC contracted under /fp:precise), which also stands in for GCC builtins.
FLAGS = {
    "unix": ["-O3", "-ffp-contract=off"],  # gcc and clang (Linux, macOS); MinGW's gcc too
    "msvc": ["/O2", "/fp:precise", "/FI" + os.path.join(HERE, "alchemy_gym", "_msvc_compat.h")],
}


class _BuildExt(build_ext):
    def build_extensions(self):
        flags = FLAGS["msvc" if self.compiler.compiler_type == "msvc" else "unix"]
        for ext in self.extensions:
            ext.extra_compile_args = ext.extra_compile_args + flags
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "alchemy_gym.agents._search",
            ["alchemy_gym/agents/_search.c"],
            depends=["alchemy_gym/_msvc_compat.h", "alchemy_gym/agents/_search_spec.h"],
            optional=not REQUIRED,
        ),
        Extension(
            "alchemy_gym.core._kernel",
            ["alchemy_gym/core/_kernel.c"],
            depends=["alchemy_gym/_msvc_compat.h", "alchemy_gym/core/_spec.h"],
            optional=not REQUIRED,
        ),
    ],
    cmdclass={"build_ext": _BuildExt},
)
