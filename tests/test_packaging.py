"""The release configuration agrees with itself: license metadata, Python versions, the wheel workflow.

Building, checking and installing the distributions is `.ci/package-check` (run by CI); the wheels of other
platforms are built by `.github/workflows/release.yml`, which only GitHub runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression_with_both_license_files():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE", "alchemy_gym/data/LICENSE"]
    for name in project["license-files"]:
        assert "Apache License" in (ROOT / name).read_text()[:200]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # deprecated with an SPDX license
    (requirement,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert tuple(int(x) for x in re.search(r">=([\d.]+)", requirement).group(1).split(".")) >= (77,)


def test_wheels_are_built_for_every_python_the_package_supports():
    project = PYPROJECT["project"]
    classified = {c.rsplit(" ", 1)[1] for c in project["classifiers"] if re.fullmatch(r".*Python :: 3\.\d+", c)}
    built = {f"3.{m}" for m in re.findall(r"cp3(\d+)-\*", PYPROJECT["tool"]["cibuildwheel"]["build"])}
    assert built == classified
    low, high = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", project["requires-python"]).groups()
    assert classified == {f"3.{m}" for m in range(int(low), int(high))}


def test_the_release_workflow_builds_every_platform_and_publishes_only_tags():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    jobs = workflow["jobs"]
    oses = jobs["wheels"]["strategy"]["matrix"]["os"]
    for family in ("ubuntu", "windows", "macos"):
        assert any(o.startswith(family) for o in oses), family
    assert any("cibuildwheel" in step.get("uses", "") for step in jobs["wheels"]["steps"])
    assert any(step.get("run") == "bash .ci/package-check" for step in jobs["sdist"]["steps"])
    publish = jobs["publish"]
    assert set(publish["needs"]) == {"sdist", "wheels"}
    assert "refs/tags/v" in publish["if"] and publish["permissions"] == {"id-token": "write"}
    assert publish["steps"][-1]["uses"].startswith("pypa/gh-action-pypi-publish@")


def test_msvc_builds_keep_the_kernels_rounding_and_have_every_builtin():
    """setup.py gives MSVC /fp:precise and forces in a header that turns contraction off (as -ffp-contract=off)
    and stands in for each GCC builtin the C sources use (MSVC has none; only popcount is guarded in the source)."""
    setup = (ROOT / "setup.py").read_text()
    assert '"/fp:precise"' in setup and '"-ffp-contract=off"' in setup and "_msvc_compat.h" in setup
    header = (ROOT / "alchemy_gym" / "_msvc_compat.h").read_text()
    assert "#pragma fp_contract(off)" in header
    defined = set(re.findall(r"#define (__builtin_\w+)", header))
    used = set()
    for source in (ROOT / "alchemy_gym").rglob("*.c"):
        used |= set(re.findall(r"\b(__builtin_\w+)\(", source.read_text()))
    assert used - {"__builtin_popcountll"} <= defined, f"give MSVC a stand-in for {used - defined}"
