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


def test_play_rejects_unknown_levels_in_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["play", "--level", "alchemy/nope"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("alchemy-gym play: error: unknown Alchemy level 'alchemy/nope': known levels are ")
    assert err.count("\n") == 1


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


def _play_human(commands, level="alchemy/all_fixed", **kwargs) -> tuple[int, str]:
    import io

    from alchemy_gym.play import play_human

    out = io.StringIO()
    status = play_human(level, input=io.StringIO("".join(f"{c}\n" for c in commands)), output=out, **kwargs)
    return status, out.getvalue()


def test_human_play_follows_typed_commands_and_announces_each_trials_end():
    from alchemy_gym.play import HUMAN_HELP

    commands = ["0 3", "xyzzy", "9 9", "h", "2 c", "2 c", "n"] + ["e"] * 10
    status, text = _play_human(commands, seed=5)
    assert status == 0
    assert "unknown command 'xyzzy': type h for help" in text and "unknown command '9 9'" in text
    assert text.count(HUMAN_HELP) == 2  # at the start and after "h"
    # a used stone is refused without a step: the board of step 2 is shown twice
    assert "stone 2 is already used (it went into the cauldron): nothing done, no step taken" in text
    assert text.count("Trial 1/10  step 2/20") == 2 and "Trial 1/10  step 3/20" in text
    # the same actions on the env: stone 0 into potion 3, stone 2 into the cauldron, a no-op, then the trials run out
    env = gym.make("Alchemy/SymbolicAllFixed-v0")
    env.reset(seed=5)
    total = 0.0
    for action in (4, 27, 0):
        total += env.step(action)[1]
    terminated = False
    while not terminated:
        _, reward, terminated, _, _ = env.step(0)
        total += reward
    rewards = env.unwrapped.episode_record().trial_rewards
    assert f"Episode over: total reward {total:+g}" in text
    ends = [line.removeprefix("> ") for line in text.splitlines() if " is over: trial reward " in line]
    assert len(ends) == 10
    for t, line in enumerate(ends):
        assert line.startswith(
            f"Trial {t + 1} of 10 is over: trial reward {rewards[t]:+g}, total {sum(rewards[: t + 1]):+g}."
        )
    assert ends[0].endswith("Trial 2 starts with new stones and potions.") and ends[-1].endswith(f"{total:+g}.")
    assert "The chemistry of this episode" not in text  # only with --reveal


def _first_dip_without_effect(level_id: str, seed: int) -> tuple[int, int]:
    """(stone slot, potion slot) of trial 0 whose potion leaves the stone unchanged, from the env's game."""
    env = gym.make(level_id)
    env.reset(seed=seed)
    game = env.unwrapped.game
    for s, stone in enumerate(game.stones):
        for p, potion in enumerate(game.potions):
            if game.transitions[6 * stone + potion] == stone:
                return s, p
    raise AssertionError("no such dip")


def test_a_potion_without_effect_is_explained_and_the_cause_only_with_reveal():
    from alchemy_gym.core.items import POTION_COLOURS

    s, p = _first_dip_without_effect("Alchemy/SymbolicAllFixed-v0", 5)
    env = gym.make("Alchemy/SymbolicAllFixed-v0")
    env.reset(seed=5)
    colour = POTION_COLOURS[env.unwrapped.game.perceived_potion(env.unwrapped.game.potions[p])]
    said = f"Nothing happened: stone {s} did not change; the {colour} potion is used up all the same."
    _, plain = _play_human([f"{s} {p}", "q"], seed=5)
    assert said in plain and "when the stone is already at the end the potion moves it towards, or when" in plain
    assert "already at that end" not in plain and "Trial 1/10  step 1/20" in plain  # it took its step
    _, revealed = _play_human([f"{s} {p}", "q"], seed=5, reveal_chemistry=True)
    # all_fixed has the full cube: the only cause is a stone already at the potion's end
    assert f"{said} {colour.capitalize()} moves a stone's " in revealed
    assert "and this stone is already at that end." in revealed


def test_no_effect_names_a_missing_path_in_the_players_terms():
    from alchemy_gym.core.game import AlchemyGame, TrialItems, encode_action
    from alchemy_gym.core.items import potion_index
    from alchemy_gym.play import no_effect
    from tests.conftest import BOTTLENECK1, fixed_chemistry

    game = AlchemyGame(num_trials=1)
    # stones (-1,1,-1) purple large pointy, (1,1,1) blue large round, (-1,-1,-1); potions green, yellow, turquoise
    items = TrialItems((2, 7, 0), (potion_index(0, 1), potion_index(1, 1), potion_index(2, 1)))
    game.start_episode(fixed_chemistry(BOTTLENECK1), items=[items])
    missing = no_effect(game, encode_action(0, 0, False), reveal_cause=True)
    assert missing.endswith(
        "The path from purple large pointy to blue large pointy is missing in this episode's chemistry."
    )
    at_end = no_effect(game, encode_action(1, 1, False), reveal_cause=True)
    assert at_end.endswith("Yellow moves a stone's size towards large, and this stone is already at that end.")
    assert no_effect(game, encode_action(2, 2, False), reveal_cause=True) is None  # it moves: no explanation
    assert no_effect(game, encode_action(0, -1, False), reveal_cause=True) is None  # the cauldron
    generic = no_effect(game, encode_action(0, 0, False), reveal_cause=False)
    assert "missing" in generic and "already at the end" in generic and "purple" not in generic


def test_without_a_seed_a_random_one_is_drawn_printed_and_replays_the_episode():
    import re

    _, first = _play_human(["q"], level="Alchemy/SymbolicStandard-v0")
    seed = int(re.search(r"^Seed (\d+) \(play this episode again with --seed \1\)$", first, re.M).group(1))
    _, again = _play_human(["q"], level="Alchemy/SymbolicStandard-v0", seed=seed)
    assert again == first
    env = gym.make("Alchemy/SymbolicStandard-v0", render_mode="ansi")
    env.reset(seed=seed)
    assert env.render().rstrip() in first


def test_human_play_of_an_evaluation_episode_plays_that_episode():
    _, text = _play_human(["q"], level="alchemy/evaluation_episodes/17")
    assert "Evaluation episode 17 (play it again: alchemy-gym play alchemy/evaluation_episodes/17 --human)" in text
    env = gym.make("Alchemy/SymbolicEvaluation-v0", render_mode="ansi")
    env.reset(options={"episode": 17})
    assert env.render().rstrip() in text


def test_reveal_speaks_of_potion_colours_stone_looks_and_missing_paths():
    """all_fixed_bottleneck3: identity maps (§2.1–2.2), edges 0, 5, 6, 7 and 11 missing (§1.5)."""
    status, text = _play_human(["q"], level="alchemy/all_fixed_bottleneck3", seed=0, reveal_chemistry=True)
    assert status == 0
    expected = """The chemistry of this episode:
  red        moves a stone's colour towards purple (reward indicator -2)
  green      moves a stone's colour towards blue (reward indicator +2)
  orange     moves a stone's size towards small (reward indicator -2)
  yellow     moves a stone's size towards large (reward indicator +2)
  pink       moves a stone's roundness towards pointy (reward indicator -2)
  turquoise  moves a stone's roundness towards round (reward indicator +2)
  The most valuable stone looks blue large round; the least, purple small pointy.
  Missing paths (5 of 12; potions cannot move a stone along them):
    purple small pointy (-3) <-> blue small pointy (-1) (red/green do nothing between them)
    purple large pointy (-1) <-> blue large pointy (+1) (red/green do nothing between them)
    purple large pointy (-1) <-> purple large round (+1) (pink/turquoise do nothing between them)
    blue large pointy (+1) <-> blue large round (+3) (pink/turquoise do nothing between them)
    purple large round (+1) <-> blue large round (+3) (red/green do nothing between them)
"""
    assert text.endswith(expected)
    assert "dims=" not in text and "constraint" not in text


def test_potion_effects_are_what_the_stones_do_under_rotations():
    """Random dips on the standard level (rotations, random maps and graphs): a stone that changes changes as
    ``potion_effect`` says (features, direction, reward indicator); one that does not was announced by
    ``no_effect``. Read from the observations, as a player sees them."""
    import numpy as np

    from alchemy_gym.core.game import encode_action
    from alchemy_gym.core.items import POTION_COLOURS, STONE_FEATURE_NAMES
    from alchemy_gym.play import no_effect, potion_effect

    rng = np.random.default_rng(0)
    env = gym.make("Alchemy/SymbolicStandard-v0")
    moved = {0: 0, 1: 0, 2: 0, 3: 0}
    still = 0
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        game = env.unwrapped.game
        chemistry = game.chemistry
        for _ in range(12):
            stones = [s for s in range(3) if game.stones[s] >= 0]
            potions = [p for p in range(12) if game.potions[p] >= 0]
            if not stones or not potions:
                break
            s, p = int(rng.choice(stones)), int(rng.choice(potions))
            colour = POTION_COLOURS[round((obs[15 + 2 * p] + 1) * 3)]
            action = encode_action(s, p, False)
            explained = no_effect(game, action, reveal_cause=True)
            before = obs[5 * s : 5 * s + 4].copy()
            obs, *_ = env.step(action)
            change = obs[5 * s : 5 * s + 4] - before
            if not change.any():
                assert explained is not None
                still += 1
                continue
            assert explained is None
            words, indicator = potion_effect(chemistry, colour)
            said = {part.split(" towards ")[0]: part.split(" towards ")[1] for part in words.split(" and ")}
            for (feature, names), d in zip(STONE_FEATURE_NAMES, change[:3]):
                assert said.get(feature) == (None if d == 0 else names[2 if d > 0 else 0])
            assert round(change[3] * 3) == indicator
            moved[chemistry.rotation] += 1
    assert still > 0 and all(n > 0 for n in moved.values()), (still, moved)


def test_human_play_stops_quietly_on_quit_end_of_input_or_ctrl_c():
    import io

    from alchemy_gym.play import play_human

    for script in ("q\n", ""):
        status, text = _play_human([script] if script else [], seed=0)
        assert status == 0 and "Stopped with a total reward of +0" in text

    class CtrlC(io.StringIO):
        def readline(self, *args):
            raise KeyboardInterrupt

    out = io.StringIO()
    assert play_human("alchemy/all_fixed", seed=0, input=CtrlC(), output=out) == 130
    assert out.getvalue().splitlines()[-1] == "interrupted: stopped with a total reward of +0"


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
    assert tuple(meta["size"]) == (240, 180) and meta["fps"] == 4
    assert sum(1 for _ in frames) == steps + 1  # the reset's picture and one per step


@pytest.mark.skipif(VECTOR_API, reason="gymnasium 0.29 only")
def test_bench_on_gymnasium_029_names_the_version_it_needs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick"])
    assert exit_info.value.code == 2
    assert "needs gymnasium>=1.0" in capsys.readouterr().err
