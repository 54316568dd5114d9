"""The command line as a user runs it (``python -m alchemy_gym ...`` in a subprocess): every bad input is one
line on stderr naming what was wrong and what is allowed, exit status 2, never a traceback; Ctrl-C ends a
command with status 130 and at most one line; ``--version`` prints the package's version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import alchemy_gym

ROOT = Path(__file__).resolve().parents[1]

# (arguments, what the one error line must say)
BAD_INPUT = [
    ([], "the following arguments are required: COMMAND"),
    (["nosuch"], "invalid choice: 'nosuch' (choose from 'levels', 'play'"),
    (["levels", "extra"], "unrecognized arguments: extra"),
    (["play", "nosuch"], "unknown Alchemy level 'nosuch': known levels are alchemy/perceptual_mapping"),
    (["play", "alchemy/evaluation_episodes/1000"], "allowed alchemy/evaluation_episodes/0 .."),
    (["play", "--episodes", "0"], "argument --episodes: got '0', allowed an integer >= 1"),
    (["play", "--episodes", "-3"], "argument --episodes: got '-3', allowed an integer >= 1"),
    (["play", "--seed", "x"], "argument --seed: got 'x', allowed an integer from 0 to 4294967295"),
    (["play", "--reveal"], "--reveal goes with --human"),
    (["play", "--human", "--episodes", "2"], "--episodes goes with the baseline, not --human"),
    (["play", "alchemy/all_fixed", "--level", "alchemy/perceptual_mapping_randomized"], "two levels given"),
    (["bench", "--env-id", "Alchemy/NoSuch-v0"], "is not a symbolic Alchemy env; allowed Alchemy/SymbolicStandard-v0"),
    (["bench", "--env-id", "Alchemy/Standard-v0"], "Alchemy/Standard-v0 is a 3D env: bench measures the symbolic envs"),
    (["bench", "--steps", "0"], "argument --steps: got '0', allowed an integer >= 1"),
    (["bench", "--sizes", "8", "x"], "argument --sizes: got 'x', allowed an integer >= 1"),
    (["bench", "--threads", "99", "--sizes", "8"], "num_threads must be an int in 1..16"),
    (["bench", "--backend", "gpu"], "invalid choice: 'gpu' (choose from 'auto', 'c', 'numpy')"),
    (["bench", "--belief"], "--belief measures the JAX env: give it with --jax"),
    (["evaluate", "--episodes", "5000"], "--episodes 5000 is out of range; allowed N from 1 to 1000"),
    (["evaluate", "--episodes", "-3"], "for the last 3 use --episodes=-3:"),
    (["evaluate", "--episodes", "0:2000"], "STOP 2000 is beyond the level's 1000 episodes"),
    (["evaluate", "--agent", "nosuch"], "unknown agent 'nosuch': allowed random, positive"),
    (["evaluate", "--level", "Alchemy/NoSuch-v0"], "unknown Alchemy level 'Alchemy/NoSuch-v0'"),
    (["evaluate", "--workers", "0"], "argument --workers: got '0', allowed an integer >= 1"),
    (["serve", "--port", "x"], "argument --port: invalid int value: 'x' (see alchemy-gym serve --help)"),
    (["serve", "--max-worlds", "-1"], "--max-worlds must be >= 1, got -1"),
    (["build-image", "--nosuch"], "unrecognized arguments: --nosuch (see alchemy-gym build-image --help)"),
]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # a Docker engine that is not there: no command may reach for one on bad input
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alchemy_gym", *args], capture_output=True, text=True, env=_env(), timeout=120
    )


@pytest.fixture(scope="module")
def bad_input_runs() -> dict:
    """Every bad-input case, run side by side (each is a fresh interpreter)."""
    with ThreadPoolExecutor(4) as pool:
        done = pool.map(_run, [args for args, _ in BAD_INPUT])
        return {tuple(args): result for (args, _), result in zip(BAD_INPUT, done)}


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) or "(none)" for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_with_exit_status_2(bad_input_runs, args, message):
    done = bad_input_runs[tuple(args)]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    subcommands = ("play", "bench", "evaluate", "serve", "build-image")
    command = "alchemy-gym" + (f" {args[0]}" if args and args[0] in subcommands else "")
    assert lines[0].startswith(f"{command}: error: ")
    assert message in lines[0]


def test_version_is_the_packages_single_version():
    done = _run(["--version"])
    assert done.returncode == 0 and done.stdout == f"alchemy-gym {alchemy_gym.__version__}\n"
    # the released version has its section in the changelog
    assert f"\n## [{alchemy_gym.__version__}] - " in (ROOT / "CHANGELOG.md").read_text()


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "alchemy_gym.__version__"}


def _sigint_by_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_after(args: list[str], ready: str, stdin=subprocess.DEVNULL) -> tuple[int, str, str]:
    """Start the command, wait until its stdout shows ``ready``, press Ctrl-C (SIGINT); its status and output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alchemy_gym", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=_sigint_by_default,  # as from a terminal (a background test run inherits SIGINT ignored)
    )
    try:
        seen = ""
        while ready not in seen:
            char = proc.stdout.read(1)
            assert char, f"the command ended before showing {ready!r}: {proc.stderr.read()}"
            seen += char
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, seen + out, err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_during_the_baseline_ends_quietly_with_status_130():
    status, _, err = _interrupt_after(["play", "--episodes", "100000"], "\n      0 ")
    assert status == 130
    assert err == "alchemy-gym: interrupted\n"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_at_the_human_prompt_ends_quietly_with_status_130():
    status, out, err = _interrupt_after(["play", "--human", "--seed", "1"], "> ", stdin=subprocess.PIPE)
    assert status == 130 and err == ""
    assert out.rstrip().splitlines()[-1] == "interrupted: stopped with a total reward of +0"
