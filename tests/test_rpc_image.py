"""The offline image build's pieces that need no Docker engine (the build itself runs in .ci/docker-env.sh)."""

from __future__ import annotations

import zipfile

from alchemy_gym.rpc import image


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


def test_the_image_gets_a_pure_python_copy_of_the_sources(tmp_path):
    """The server image installs our wheel on its own Python: the copy has no setup.py (so no C extension
    is compiled into a wheel tied to the host's Python) and no built extension files."""
    image._copy_sources(tmp_path)
    assert (tmp_path / "pyproject.toml").exists() and (tmp_path / "alchemy_gym" / "rpc" / "server.py").exists()
    assert not (tmp_path / "setup.py").exists()
    assert not list(tmp_path.rglob("*.so"))
    assert (tmp_path / "alchemy_gym" / "agents" / "ideal_observer.py").exists()
