"""The ``rgb_array`` pictures: their size setting, the strip's counters, the stone values and the items,
read back from the pixels with the built-in font; the animation script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import alchemy_gym  # noqa: F401
from alchemy_gym import render
from alchemy_gym.agents import make_agent, run_env_episode
from alchemy_gym.core.game import encode_action
from alchemy_gym.render import FRAME_SIZE, FramePainter, draw_text, text_mask

EVALUATION = "Alchemy/SymbolicEvaluation-v0"
SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "make_animation.py"


def contains_text(mask: np.ndarray, text: str, scale: int, y: int) -> bool:
    """Whether ``text`` is written in ``mask`` (bool, pixels of the text's colours) with its top at row ``y``
    and nothing else written in the letter spaces just before and after it."""
    glyphs = text_mask(f" {text} ", scale)
    h, w = glyphs.shape
    pad = np.zeros((mask.shape[0], w), dtype=np.bool_)
    rows = np.concatenate([pad, mask, pad], axis=1)[y : y + h]
    if rows.shape[0] < h:
        return False
    windows = np.lib.stride_tricks.sliding_window_view(rows, (h, w))[0]
    return bool((windows == glyphs).all(axis=(1, 2)).any())


def header_mask(picture: np.ndarray, scale: int) -> np.ndarray:
    """Pixels of the top strip that are not its background."""
    strip = picture[: 15 * scale]
    return (strip != strip[0, 0]).any(axis=2)


def header_says(picture: np.ndarray, scale: int, *texts: str) -> bool:
    mask = header_mask(picture, scale)
    return all(contains_text(mask, text, scale, 4 * scale) for text in texts)


def tag_text(picture: np.ndarray, scale: int, slot: int, candidates) -> list[str]:
    """Which of ``candidates`` the value tag under stone ``slot`` says."""
    top = (render._TAG_Y + 2) * scale
    x0, x1 = slot * picture.shape[1] // 3, (slot + 1) * picture.shape[1] // 3
    band = picture[:, x0:x1]
    mask = (band != render._TAG_RGB).any(axis=2) & (band != render._WOOD_RGB).any(axis=2)
    return [text for text in candidates if contains_text(mask, text, scale, top)]


def expected_header(env) -> tuple[str, ...]:
    game = env.unwrapped.game
    if game.trial_number < 0:
        return ("EPISODE OVER", f"REWARD {env.unwrapped.episode_return:+g}")
    return (
        f"TRIAL {game.trial_number + 1}/{game.num_trials}",
        f"STEP {game.steps_this_trial}/{game.max_steps_per_trial}",
        f"REWARD {env.unwrapped.episode_return:+g}",
    )


VALUES = ("-3", "+1", "-1", "+15", "USED")


@pytest.mark.parametrize(("scale", "steps"), [(1, 200), (2, 30)])
def test_the_strip_and_the_tags_say_trial_step_reward_and_stone_values(scale, steps):
    """Read back at every step of an episode (the first 30 steps at scale 2)."""
    env = gym.make(EVALUATION, render_mode="rgb_array", render_scale=scale)
    env.reset(options={"episode": 5})
    game = env.unwrapped.game
    rng = np.random.default_rng(0)
    seen_rewards = set()
    for step in range(steps):
        picture = env.render()
        assert picture.shape == (180 * scale, 240 * scale, 3) and picture.dtype == np.uint8
        assert header_says(picture, scale, *expected_header(env)), (step, expected_header(env))
        if game.trial_number >= 0:
            for slot, latent in enumerate(game.stones):
                expected = "USED" if latent < 0 else f"{game.values[latent]:+g}"
                assert tag_text(picture, scale, slot, VALUES) == [expected], (step, slot)
        # cash a stone now and then so that the reward changes
        stones = [s for s, latent in enumerate(game.stones) if latent >= 0]
        if stones and rng.random() < 0.3:
            action = encode_action(int(rng.choice(stones)), -1, False)
        else:
            action = int(rng.integers(40))
        _, reward, terminated, _, _ = env.step(action)
        seen_rewards.add(env.unwrapped.episode_return)
        if terminated:
            break
    assert len(seen_rewards) > 1
    if steps < 200:
        return
    assert terminated and len(seen_rewards) > 3
    final = env.render()
    assert header_says(final, scale, *expected_header(env))
    assert not header_says(final, scale, "TRIAL 10/10")


def test_the_counters_read_back_change_with_each_step():
    env = gym.make("Alchemy/SymbolicAllFixed-v0", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert header_says(first, 1, "TRIAL 1/10", "STEP 0/20", "REWARD +0")
    values = [env.unwrapped.game.values[latent] for latent in env.unwrapped.game.stones]
    env.step(1)  # stone 0 into the cauldron
    second = env.render()
    assert header_says(second, 1, "STEP 1/20", f"REWARD {values[0]:+g}")
    assert not header_says(second, 1, "STEP 0/20")
    assert tag_text(second, 1, 0, VALUES) == ["USED"]
    env.step(0)  # a no-op changes only the strip
    third = env.render()
    changed = np.flatnonzero((third != second).any(axis=(1, 2)))
    assert changed.size and changed.max() < 15 and header_says(third, 1, "STEP 2/20")
    assert env.render() is third  # nothing changed: the same (read-only) picture
    assert not third.flags.writeable


def test_stones_and_potions_are_drawn_in_their_perceived_colours():
    env = gym.make("Alchemy/SymbolicAllFixed-v0", render_mode="rgb_array", render_scale=2)
    env.reset(seed=1)
    unwrapped = env.unwrapped
    painter = FramePainter(2)

    def colours(picture, box):
        top, left, bottom, right = box
        return {tuple(c) for c in picture[top:bottom, left:right].reshape(-1, 3)}

    for _ in range(3):
        picture = env.render()
        game = unwrapped.game
        for slot, latent in enumerate(game.stones):
            inside = colours(picture, painter.stone_box(slot))
            for colour_index, rgb in enumerate(render.STONE_RGB):
                fill = tuple(int(round(c * 255)) for c in rgb)
                perceived = latent >= 0 and game.perceived_stone(latent)[0][0] + 1 == colour_index
                assert (fill in inside) == perceived, (slot, colour_index)
        for slot, latent in enumerate(game.potions):
            inside = colours(picture, painter.potion_box(slot))
            for index, rgb in enumerate(render.POTION_RGB):
                fill = tuple(int(round(c * 255)) for c in rgb)
                assert (fill in inside) == (latent >= 0 and game.perceived_potion(latent) == index)
            assert (render._EMPTY_GLASS_RGB in inside) == (latent < 0)
        env.step(2)  # stone 0 into potion 0, then nothing (potion 0 is used)


def test_stone_size_and_roundness_change_the_shape():
    painter = FramePainter(1)
    areas = [[fill.index.size for _, fill, _ in per_size] for per_size in painter._stone_shapes]
    # bigger for larger stones, rounder for rounder ones
    assert all(a[0] < a[1] < a[2] for a in areas)
    assert all(areas[0][r] < areas[1][r] < areas[2][r] for r in range(3))


@pytest.mark.parametrize("scale", [1, 3])
def test_the_vector_env_draws_what_the_single_env_draws(scale):
    envs = gym.make_vec(
        "Alchemy/SymbolicStandard-v0", num_envs=2, vectorization_mode="vector_entry_point",
        render_mode="rgb_array", render_scale=scale,
    )  # fmt: skip
    singles = [gym.make("Alchemy/SymbolicStandard-v0", render_mode="rgb_array", render_scale=scale) for _ in range(2)]
    envs.reset(seed=4)
    for i, env in enumerate(singles):
        env.reset(seed=4 + i)
    rng = np.random.default_rng(1)
    for actions in [[2, 15], [1, 0], [0, 14]] + rng.integers(0, 40, size=(40, 2)).tolist():
        envs.step(np.array(actions))
        for action, env in zip(actions, singles):
            _, _, terminated, _, _ = env.step(action)
            assert not terminated
        pictures = envs.render()
        for picture, env in zip(pictures, singles):
            assert picture.shape == (180 * scale, 240 * scale, 3)
            np.testing.assert_array_equal(picture, env.render())


def test_a_picture_drawn_over_the_last_one_is_the_picture_drawn_afresh():
    """The painter pastes only the slots that changed since its last picture: the result is the same as a
    new painter's, through trials, episodes and the end screen."""
    env = gym.make("Alchemy/SymbolicStandard-v0", num_trials=2).unwrapped
    painter = FramePainter(1)
    env.reset(seed=7)
    rng = np.random.default_rng(7)
    for step in range(100):
        np.testing.assert_array_equal(painter.paint(env.game), FramePainter(1).paint(env.game), err_msg=str(step))
        _, _, terminated, _, _ = env.step(int(rng.integers(40)))
        if terminated:
            np.testing.assert_array_equal(painter.paint(env.game), FramePainter(1).paint(env.game))
            env.reset()


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, r"render_scale=0 out of range: allowed 1\.\.8 \(pictures are 240·render_scale"),
        (9, ValueError, r"render_scale=9 out of range: allowed 1\.\.8"),
        (1.5, TypeError, r"render_scale must be an int in 1\.\.8 .*got 1\.5 of type float"),
        ("2", TypeError, r"render_scale must be an int in 1\.\.8 .*got '2' of type str"),
        (True, TypeError, r"render_scale must be an int in 1\.\.8 .*got True of type bool"),
    ],
)
def test_bad_render_scales_say_what_is_allowed(value, error, message):
    with pytest.raises(error, match=message):
        gym.make("Alchemy/SymbolicStandard-v0", render_mode="rgb_array", render_scale=value)
    with pytest.raises(error, match=message):
        gym.make_vec("Alchemy/SymbolicStandard-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     render_scale=value)  # fmt: skip


def test_render_scale_is_not_a_jax_option():
    pytest.importorskip("jax")
    import alchemy_gym.jax as aj

    with pytest.raises(ValueError, match=r"\['render_scale'\] are not settings of the JAX env"):
        aj.make("Alchemy/SymbolicStandard-v0", render_scale=2)


def test_the_font_writes_text_and_names_missing_characters():
    image = np.zeros((20, 80, 3), dtype=np.uint8)
    left, right = draw_text(image, "Step 3/20", 40, 5, (255, 255, 255), 1, "centre")
    assert right - left == 9 * 6 - 1
    assert contains_text((image > 0).any(axis=2), "STEP 3/20", 1, 5)
    assert text_mask("ab", 3).shape == (21, 11 * 3)
    draw_text(image, "CUT OFF AT THE EDGE", 70, 15, (255, 0, 0))  # clipped, no error
    lacks = r"characters the built-in font lacks: '_é'; allowed: letters A-Z \(any case\), digits, space and \+-/:"
    with pytest.raises(ValueError, match=lacks):
        text_mask("stone_é")
    with pytest.raises(ValueError, match="align must be 'left', 'centre' or 'right', got 'middle'"):
        draw_text(image, "X", 0, 0, (1, 2, 3), align="middle")


def test_frame_size_follows_the_scale():
    for scale in (1, 2, 8):
        painter = FramePainter(scale)
        assert (painter.width, painter.height) == (FRAME_SIZE[0] * scale, FRAME_SIZE[1] * scale)
    env = gym.make("Alchemy/SymbolicStandard-v0", render_mode="rgb_array", render_scale=2)
    assert env.unwrapped.render_size == (480, 360)
    picture = env.unwrapped.render()  # before reset: an empty table that says so
    assert picture.shape == (360, 480, 3) and header_says(picture, 2, "NOT STARTED: CALL RESET()")


def test_the_animation_script_writes_a_gif(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    spec = importlib.util.spec_from_file_location("make_animation", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "episode.gif"
    argv = ["--agent", "positive", "--episode", "3", "--trials", "2", "--scale", "1", "--out", str(out)]
    assert script.main(argv) == 0
    with image_module.open(out) as gif:
        assert gif.size == (240, 194) and gif.n_frames > 3
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
        last = np.asarray(gif.convert("RGB"))
    assert durations[0] == script.TRIAL_START_MS and durations[-1] == script.LAST_MS
    assert header_says(last[:180], 1, "EPISODE OVER")
    env = gym.make(EVALUATION, num_trials=2)
    total = sum(run_env_episode(make_agent("positive"), env, episode=3))
    caption = (last[180:] != last[180, 0]).any(axis=2)
    assert contains_text(caption, f"THE POSITIVE SCORED {total:+g}", 1, 4)
