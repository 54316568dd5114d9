"""The command line (levels, play, bench) and the play baseline."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from alchemy_gym.cli import main
from alchemy_gym.envs.gymnasium_version import VECTOR_API
from alchemy_gym.play import cash_positive_stones
from tests.conftest import needs_gymnasium_1


def test_cash_positive_stones_scores_67_418_on_the_evaluation_set_section_1_2():
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    total = 0.0
    for episode in range(1000):
        obs, _ = env.reset(options={"episode": episode})
        terminated = False
        while not terminated:
            obs, reward, terminated, _, _ = env.step(cash_positive_stones(obs))
            total += reward
    assert total / 1000 == pytest.approx(67.418, abs=1e-9)


def test_play_prints_per_trial_rewards(capsys):
    assert main(["play", "--episodes", "2", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 2
    for line in lines:
        values = [float(v) for v in line.split()[1:]]
        assert len(values) == 11 and sum(values[:10]) == values[10]
    assert "mean episode reward over 2 episodes" in out


def test_play_rejects_unknown_levels():
    with pytest.raises(ValueError, match="unknown Alchemy level"):
        main(["play", "--level", "alchemy/nope"])


def test_levels_lists_every_level(capsys):
    assert main(["levels"]) == 0
    out = capsys.readouterr().out
    assert "Alchemy/SymbolicStandard-v0" in out and "alchemy/all_fixed_bottleneck3" in out


@needs_gymnasium_1
def test_bench_reports_speed_replay_and_memory(capsys):
    args = ["bench", "--steps", "2000", "--sizes", "1", "8", "--vector-steps", "4000", "--rounds", "2", "--envs", "20"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    table = result["side_by_side"]
    assert table["rounds"] == 2 and table["single"]["median"] > 0
    assert set(table["vector"]) == {"1", "8"}
    for row in table["vector"].values():
        assert row["min"] <= row["median"] <= row["max"] and row["ratio_to_single_median"] > 0
    assert result["replay"]["mean"] == pytest.approx(284.417)
    assert result["memory"]["n_envs"] == 20 and result["memory"]["traced_bytes_per_env"] > 0
    vector = result["vector_memory"]
    assert vector["n_envs"] == 8 and 0 < vector["state_bytes_per_env"] <= 1024
    assert vector["rng_bytes_per_env"] == 624 * 4 + 4


def test_bench_jax_reports_the_jax_env_beside_the_vector_env_with_its_belief():
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None:
        pytest.skip("the JAX env is the optional 'jax' extra")
    # in its own process: JAX's threads in this one would make the later tests' forks unsafe
    args = ["bench", "--jax", "--belief", "--quick", "--sizes", "16", "--json"]
    done = subprocess.run([sys.executable, "-m", "alchemy_gym", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    row = result["sizes"]["16"]
    assert result["rounds"] == 1 and row["jax"]["median"] > 0 and row["vector"]["median"] > 0
    assert row["jax_with_belief"]["median"] > 0 and row["compile_seconds"]["median"] > 0


def test_bench_belief_needs_jax(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--belief"])
    assert info.value.code == 2
    assert "--belief measures the JAX env: give it with --jax" in capsys.readouterr().err


def test_human_play_follows_typed_commands_and_reveals_the_chemistry():
    import io

    from alchemy_gym.play import HUMAN_HELP, play_human

    commands = ["0 3", "xyzzy", "9 9", "h", "2 c", "n"] + ["e"] * 10
    out = io.StringIO()
    assert (
        play_human(
            "alchemy/all_fixed",
            seed=5,
            reveal_chemistry=True,
            input=io.StringIO("\n".join(commands) + "\n"),
            output=out,
        )
        == 0
    )
    text = out.getvalue()
    assert "unknown command 'xyzzy': type h for help" in text and "unknown command '9 9'" in text
    assert text.count(HUMAN_HELP) == 2  # at the start and after "h"
    # the same actions on the env: stone 0 into potion 3, stone 2 into the cauldron, a no-op, then the trials run out
    env = gym.make("Alchemy/SymbolicAllFixed-v0")
    env.reset(seed=5)
    total = 0.0
    for action in (4, 27, 0):
        total += env.step(action)[1]
    terminated = False
    while not terminated:
        _, reward, terminated, _, info = env.step(0)
        total += reward
    assert f"Episode over: total reward {total:+g}" in text
    assert "The chemistry was: " + env.unwrapped.game.chemistry.describe() in text
    assert "Missing edges between latent stones: none (the full cube)" in text


def test_human_play_stops_on_quit_or_end_of_input():
    import io

    from alchemy_gym.play import play_human

    for script in ("q\n", ""):
        out = io.StringIO()
        play_human("alchemy/all_fixed", seed=0, input=io.StringIO(script), output=out)
        assert "Stopped with a total reward of +0" in out.getvalue()
        assert "The chemistry was" not in out.getvalue()


def test_record_video_writes_a_playable_video_of_a_symbolic_episode(tmp_path):
    pytest.importorskip("moviepy", reason="RecordVideo needs the optional 'video' extra (moviepy)")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    import numpy as np
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(
        gym.make("Alchemy/SymbolicStandard-v0", render_mode="rgb_array"),
        str(tmp_path / "videos"),
        episode_trigger=lambda episode: True,
        disable_logger=True,
    )
    env.reset(seed=0)
    steps, terminated = 0, False
    while not terminated:
        _, _, terminated, _, _ = env.step(int(np.random.default_rng(steps).integers(40)))
        steps += 1
    env.close()
    (video,) = (tmp_path / "videos").glob("*.mp4")
    frames = imageio_ffmpeg.read_frames(str(video))
    meta = next(frames)
    assert tuple(meta["size"]) == (96, 72) and meta["fps"] == 4
    assert sum(1 for _ in frames) == steps + 1  # the reset's picture and one per step


@pytest.mark.skipif(VECTOR_API, reason="gymnasium 0.29 only")
def test_bench_on_gymnasium_029_names_the_version_it_needs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick"])
    assert exit_info.value.code == 2
    assert "needs gymnasium>=1.0" in capsys.readouterr().err
