"""Build of the optional C search kernel (``alchemy_gym.agents._search``); all metadata is in pyproject.toml.

Without a compiler the extension is skipped (``optional=True``) and the ideal observer uses its pure Python
search, which gives the same results.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class _BuildExt(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                # no fused multiply-adds: the kernel must round exactly as the Python search does
                ext.extra_compile_args = ext.extra_compile_args + ["-ffp-contract=off"]
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "alchemy_gym.agents._search",
            ["alchemy_gym/agents/_search.c"],
            optional=True,
            extra_compile_args=["-O3"],
        ),
        Extension(
            "alchemy_gym.core._kernel",
            ["alchemy_gym/core/_kernel.c"],
            optional=True,
            extra_compile_args=["-O3"],
        ),
    ],
    cmdclass={"build_ext": _BuildExt},
)
