"""The offline image build's pieces that need no Docker engine (the build itself runs in .ci/docker-env.sh)."""

from __future__ import annotations

import zipfile

from alchemy_gym.server import image


def test_platform_tags_cover_the_base_images_glibc():
    tags = image._platforms({"machine": "x86_64", "libc": "2.36", "version": "3.11"})
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert tags[-1] == "manylinux2014_x86_64"


def test_source_hash_follows_the_dockerfile_and_the_base(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM base\n")
    first = image.source_hash("sha256:aaa", dockerfile)
    assert first == image.source_hash("sha256:aaa", dockerfile)
    assert first != image.source_hash("sha256:bbb", dockerfile)
    dockerfile.write_text("FROM base\nUSER 1\n")
    assert first != image.source_hash("sha256:aaa", dockerfile)


def test_wheel_requirements_skip_extras(tmp_path):
    wheel = tmp_path / "alchemy_gym-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(
            "alchemy_gym-0.1.0.dist-info/METADATA",
            'Name: alchemy-gym\nRequires-Dist: numpy>=1.26\nRequires-Dist: docker>=7.0; extra == "rpc"\n',
        )
    assert image._wheel_requirements(wheel) == ["numpy>=1.26"]


def test_the_repository_dockerfile_runs_the_server_as_non_root_on_10000():
    text = (image._SOURCE_ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE" in text and "USER 10001" in text
    assert '"--host", "0.0.0.0", "--port", "10000"' in text


def test_the_image_is_labelled_as_one_that_checks_tokens():
    """The Docker launcher gives a token only to images with this label (the Unity image has none)."""
    from alchemy_gym.rpc.names import TOKEN_ENV, TOKEN_IMAGE_LABEL

    text = (image._SOURCE_ROOT / "Dockerfile").read_text()
    assert f'LABEL {TOKEN_IMAGE_LABEL}="{TOKEN_ENV}"' in text


def test_the_image_gets_the_sources_with_the_kernels_only_for_the_same_python(tmp_path):
    """The server image installs our wheel on its own Python: with setup.py (the compiled game and search
    kernels) when that Python is this one's version, else a pure-Python copy; never built extension files."""
    import platform
    import sys

    pure, compiled = tmp_path / "pure", tmp_path / "compiled"
    image._copy_sources(pure)
    image._copy_sources(compiled, with_extensions=True)
    for copy in (pure, compiled):
        assert (copy / "pyproject.toml").exists() and (copy / "alchemy_gym" / "server" / "service.py").exists()
        assert (copy / "alchemy_gym" / "core" / "_kernel.c").exists()
        assert not list(copy.rglob("*.so"))
    assert not (pure / "setup.py").exists() and (compiled / "setup.py").exists()
    here = {"version": "{}.{}".format(*sys.version_info[:2]), "machine": platform.machine()}
    assert image.same_python(here)
    assert not image.same_python(here | {"version": "3.9"}) and not image.same_python(here | {"machine": "riscv"})
