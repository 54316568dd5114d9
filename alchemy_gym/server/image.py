"""``alchemy-gym build-image``: the Docker image of our dm_env_rpc server, built without a registry.

Steps (each reused when already done):

1. **Base image**: ``--base`` if given and present; else ``python:3.11-slim-bookworm`` if
   present locally; else ``alchemy-gym-base:bookworm``, made with
   ``mmdebstrap --variant=minbase --include=python3,python3-pip bookworm`` and imported
   (Debian's packages are reachable where registries are not; done once).
2. **Wheels** on the host, for the base image's Python and platform (asked from the image
   itself): our wheel (built from a copy of the source tree) and the server's dependencies
   (``pip download --only-binary=:all:``), cached in ``~/.cache/alchemy-gym/wheels-*``.
3. **Image**: the repository's ``Dockerfile`` in a temporary context with ``./wheels``;
   ``pip install --no-index`` inside. Tagged ``alchemy-gym-server:<content hash>`` (the
   hash covers the Dockerfile, the package sources and the base image id) and
   ``alchemy-gym-server:latest``; an image with the same hash is reused.

Prints the tag on stdout (progress on stderr). Needs a Docker engine (``DOCKER_HOST``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alchemy_gym.usage import ArgumentParser

REPOSITORY = "alchemy-gym-server"
DEBIAN_BASE = "alchemy-gym-base:bookworm"
PYTHON_BASE = "python:3.11-slim-bookworm"
#: What the server needs inside the image besides alchemy-gym's own dependencies.
SERVER_REQUIREMENTS = ("dm-env-rpc>=1.1.6", "grpcio>=1.60")

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _say(message: str) -> None:
    print(f"[build-image] {message}", file=sys.stderr, flush=True)


def _image_exists(client, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def debian_base(client, name: str = DEBIAN_BASE, suite: str = "bookworm") -> str:
    """Make (once) a minimal Debian image with python3 and pip, with mmdebstrap."""
    if _image_exists(client, name):
        return name
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError(
            "no Python base image is present and mmdebstrap is missing: apt-get install mmdebstrap, "
            "or pass --base with a local image that has python3 and pip"
        )
    _say(f"making {name} with mmdebstrap (minbase {suite} + python3, pip) …")
    with tempfile.TemporaryDirectory(prefix="alchemy-gym-base-") as tmp:
        tarball = os.path.join(tmp, "rootfs.tar")
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", "--include=python3,python3-pip", suite, tarball],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        repository, _, tag = name.partition(":")
        client.api.import_image_from_file(tarball, repository=repository, tag=tag or "latest")
    return name


def base_python(client, base: str) -> dict:
    """``{"version": "3.11", "platform": "manylinux…", "tags": …}`` of the base image's python3."""
    script = (
        "import json, sys, sysconfig, platform;"
        "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], 'machine': platform.machine(),"
        " 'libc': platform.libc_ver()[1]}))"
    )
    out = client.containers.run(base, ["python3", "-c", script], remove=True, user="0")
    return json.loads(out.decode().strip().splitlines()[-1])


def _platforms(info: dict) -> list[str]:
    machine = info["machine"]
    major, minor = (int(x) for x in (info.get("libc") or "2.17").split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
    return tags + [f"manylinux2014_{machine}"]


def _copy_sources(dest: Path, with_extensions: bool = False) -> None:
    """The package sources for the wheel: with ``setup.py`` (so the wheel carries the compiled game kernel and
    search kernel, for the host's Python) or without (a pure-Python wheel for any Python; the server's game then
    runs on its numpy backend). Never built extension files."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_generated", "*.so", "*.pyd")
    shutil.copytree(_SOURCE_ROOT / "alchemy_gym", dest / "alchemy_gym", ignore=ignore)
    shutil.copy2(_SOURCE_ROOT / "pyproject.toml", dest / "pyproject.toml")
    extras = ("README.md", "LICENSE") + (("setup.py",) if with_extensions else ())
    for extra in extras:
        src = _SOURCE_ROOT / extra
        if src.exists():
            shutil.copy2(src, dest / extra)
    if not (dest / "README.md").exists():
        (dest / "README.md").write_text("alchemy-gym\n")


def same_python(info: dict) -> bool:
    """Whether the image's Python can load extensions built by this one (same version and machine)."""
    import platform

    return info["version"] == "{}.{}".format(*sys.version_info[:2]) and info["machine"] == platform.machine()


def source_hash(base_id: str, dockerfile: Path) -> str:
    """Hash of what goes into the image: Dockerfile, package sources, pyproject, base image id."""
    h = hashlib.sha256()
    h.update(base_id.encode())
    h.update(dockerfile.read_bytes())
    h.update((_SOURCE_ROOT / "pyproject.toml").read_bytes())
    h.update(" ".join(SERVER_REQUIREMENTS).encode())
    for path in sorted((_SOURCE_ROOT / "alchemy_gym").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".so", ".pyd"):
            h.update(str(path.relative_to(_SOURCE_ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_wheels(dest: Path, info: dict, cache: Path) -> None:
    """Our wheel plus the dependency wheels for the base image's Python, into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    for with_extensions in (True, False) if same_python(info) else (False,):
        with tempfile.TemporaryDirectory(prefix="alchemy-gym-src-") as tmp:
            src = Path(tmp) / "src"
            src.mkdir()
            _copy_sources(src, with_extensions)
            try:
                _pip_wheel(pip, src, dest)
            except subprocess.CalledProcessError:
                if with_extensions:
                    _say("building the wheel with the compiled kernels failed: the image gets a pure-Python wheel")
                    continue
                raise
            break
    if not with_extensions:
        _say(f"the image gets a pure-Python wheel (its Python is {info['version']}): its game runs on numpy")
    wheel = next(dest.glob("alchemy_gym-*.whl"))
    requirements = _wheel_requirements(wheel) + list(SERVER_REQUIREMENTS)
    cache.mkdir(parents=True, exist_ok=True)
    cmd = pip + ["download", "--only-binary=:all:", "--dest", str(cache), "--python-version", info["version"]]
    cmd += ["--implementation", "cp"]
    for platform_tag in _platforms(info):
        cmd += ["--platform", platform_tag]
    subprocess.run(cmd + requirements, check=True, stdout=sys.stderr)
    for path in cache.glob("*.whl"):
        shutil.copy2(path, dest / path.name)


def _pip_wheel(pip: list[str], src: Path, dest: Path) -> None:
    try:
        cmd = ["wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), str(src)]
        subprocess.run(pip + cmd, check=True, stdout=sys.stderr)
    except subprocess.CalledProcessError:
        _say("building the wheel without isolation failed; retrying with pip's build isolation")
        subprocess.run(pip + ["wheel", "--no-deps", "--wheel-dir", str(dest), str(src)], check=True)


def _wheel_requirements(wheel: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return [
        line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]


def build_image(
    *,
    base: str | None = None,
    dockerfile: str | os.PathLike | None = None,
    tag: str | None = None,
    force: bool = False,
    client=None,
) -> str:
    """Build (or reuse) the server image; returns its tag."""
    from alchemy_gym.rpc.launchers import docker_client

    client = client or docker_client(timeout=600)
    dockerfile = Path(dockerfile) if dockerfile else _SOURCE_ROOT / "Dockerfile"
    if not dockerfile.exists():
        raise FileNotFoundError(f"{dockerfile} not found: run from a source checkout or pass --dockerfile")
    if base is not None:
        if not _image_exists(client, base):
            raise RuntimeError(f"base image {base!r} is not present locally (this build never pulls)")
    elif _image_exists(client, PYTHON_BASE):
        base = PYTHON_BASE
    else:
        base = debian_base(client)
    base_id = client.images.get(base).id
    digest = source_hash(base_id, dockerfile)
    tag = tag or f"{REPOSITORY}:{digest}"
    if not force and _image_exists(client, tag):
        existing = client.images.get(tag)
        if existing.labels.get("alchemy-gym.source-hash") == digest:
            _say(f"{tag} is up to date")
            return tag
    info = base_python(client, base)
    _say(f"base {base}: Python {info['version']} on {info['machine']} (glibc {info['libc']})")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alchemy-gym"
    cache = cache / f"wheels-cp{info['version'].replace('.', '')}-{info['machine']}"
    with tempfile.TemporaryDirectory(prefix="alchemy-gym-image-") as ctx:
        ctx_path = Path(ctx)
        shutil.copy2(dockerfile, ctx_path / "Dockerfile")
        _say("building wheels …")
        build_wheels(ctx_path / "wheels", info, cache)
        _say(f"building {tag} …")
        import docker

        try:
            image, _logs = client.images.build(
                path=str(ctx_path),
                tag=tag,
                buildargs={"BASE_IMAGE": base},
                labels={"alchemy-gym.source-hash": digest},
                rm=True,
                forcerm=True,
                pull=False,
            )
        except docker.errors.BuildError as exc:
            log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
            raise RuntimeError(f"docker build failed: {exc.msg}\n{log[-4000:]}") from None
    if tag.startswith(f"{REPOSITORY}:"):
        image.tag(REPOSITORY, "latest")
        _prune_old_images(client, keep=image.id)
    return tag


def _prune_old_images(client, keep: str) -> None:
    """Remove older builds of :data:`REPOSITORY` (best effort: images in use stay)."""
    for old in client.images.list(name=REPOSITORY):
        if old.id == keep:
            continue
        try:
            client.images.remove(old.id, force=False)
        except Exception:
            pass


def main(argv: list[str] | None = None) -> int:
    """``alchemy-gym build-image [--base IMAGE] [--tag TAG] [--force]``: prints the image tag."""
    parser = ArgumentParser(prog="alchemy-gym build-image", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base", help="a local base image with python3 and pip (default: python:3.11-slim or mmdebstrap)"
    )
    parser.add_argument("--tag", help=f"image tag (default {REPOSITORY}:<content hash>)")
    parser.add_argument("--dockerfile", help="Dockerfile to use (default: the repository's)")
    parser.add_argument("--force", action="store_true", help="rebuild even if an image with the same hash exists")
    args = parser.parse_args(argv)
    try:
        tag = build_image(base=args.base, dockerfile=args.dockerfile, tag=args.tag, force=args.force)
    except Exception as exc:
        print(f"alchemy-gym build-image: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
