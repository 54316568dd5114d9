"""The batched core: dm_alchemy's RandomState draws as MT19937 rows, and both backends against the reference game."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from alchemy_gym.core import rng
from alchemy_gym.core.batch import STATE_ARRAYS, GameBatch, GameConfig
from alchemy_gym.core.episodes import EpisodeSource, FixedEpisode, TrialItems
from alchemy_gym.core.game import AlchemyGame, EpisodeOver
from alchemy_gym.levels import LEVELS
from tests.reference_game import ReferenceGame

try:
    from alchemy_gym.core import _kernel  # noqa: F401

    HAVE_KERNEL = True
except ImportError:
    HAVE_KERNEL = False

BACKENDS = ["numpy", pytest.param("c", marks=pytest.mark.skipif(not HAVE_KERNEL, reason="C kernel not built"))]
SAMPLED_LEVELS = [level.name for level in LEVELS if level.symbolic_id and not level.is_evaluation]
STANDARD = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
SETTINGS = [
    {},
    {"end_trial_action": True},
    {"observe_used": False},
    {
        "end_trial_action": True,
        "observe_used": False,
        "num_trials": 3,
        "max_steps_per_trial": 7,
        "num_stones_per_trial": 2,
        "num_potions_per_trial": 5,
        "reward_weights": ((1.0, 2.0, -0.5), 0.25, 3.0),
    },
]


# ------------------------------------------------------------------------------ rng (§4.7)


def _mixed_draws(draw_randint, draw_sample, rows, steps, seed):
    """Interleaved randint(0, h) / random_sample draws on changing subsets of rows; returns every value."""
    choice = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        kind = int(choice.integers(5))
        subset = np.sort(choice.choice(rows, size=int(choice.integers(1, len(rows) + 1)), replace=False))
        if kind == 4:
            out.append((kind, subset, draw_sample(subset)))
        else:
            high = (8, 6, 48, 4)[kind]
            out.append((kind, subset, draw_randint(subset, high)))
    return out


def test_seed_rows_is_randomstate_seeding_on_thousands_of_seeds():
    seeds = np.concatenate([np.arange(1500), np.random.default_rng(0).integers(0, 2**32, 1500, dtype=np.uint64)])
    key, pos = rng.new_state(len(seeds))
    rng.seed_rows(key, pos, np.arange(len(seeds)), seeds)
    for i in range(0, len(seeds), 7):
        name, words, position, *_ = np.random.RandomState(int(seeds[i])).get_state()
        assert name == "MT19937" and position == pos[i] == 624
        np.testing.assert_array_equal(key[i], words)


def test_numpy_draws_equal_randomstate_draws_on_thousands_of_seeds():
    n = 2000
    key, pos = rng.new_state(n)
    rng.seed_rows(key, pos, np.arange(n), np.arange(n) * 7919 + 3)
    reference = [np.random.RandomState(i * 7919 + 3) for i in range(n)]
    draws = _mixed_draws(
        lambda rows, high: rng.randint(key, pos, rows, high), lambda rows: rng.random_sample(key, pos, rows),
        np.arange(n), 300, seed=1,
    )  # fmt: skip
    for kind, rows, values in draws:
        if kind == 4:
            expected = [reference[i].random_sample() for i in rows]
        else:
            expected = [reference[i].randint(0, (8, 6, 48, 4)[kind]) for i in rows]
        assert values.tolist() == expected
    assert (pos < 624).all()  # every stream was regenerated (twisted) at least once


@pytest.mark.skipif(not HAVE_KERNEL, reason="C kernel not built")
def test_kernel_draws_equal_randomstate_draws_on_thousands_of_seeds():
    n = 2000
    batch = GameBatch(n, backend="c")
    seeds = [int(s) for s in np.random.default_rng(2).integers(0, 2**32, n, dtype=np.uint64)]
    batch.seed(np.arange(n), seeds)
    kernel = batch._kernel
    for i in range(n):
        reference = np.random.RandomState(seeds[i])
        np.testing.assert_array_equal(batch.rng_key[i], reference.get_state()[1])
        for j in range(300 if i % 10 == 0 else 20):  # some rows past a twist (624 words)
            high = (8, 6, 48, 4, 0)[j % 5]
            if high:
                assert kernel.randint(i, high) == reference.randint(0, high)
            else:
                assert kernel.random_sample(i) == reference.random_sample()
        name, words, position, *_ = reference.get_state()
        np.testing.assert_array_equal(batch.rng_key[i], words)
        assert batch.rng_pos[i] == position


def test_any_randomstate_can_be_continued_in_a_row():
    rs = np.random.RandomState([12345, 7])  # init_by_array seeding, used by the evaluation
    rs.randint(0, 8, size=5)
    key, pos = rng.new_state(2)
    rng.load_random_state(key, pos, 1, rs)
    assert rng.randint(key, pos, np.array([1]), 6).tolist() == [rs.randint(0, 6)]
    copy_ = rng.to_random_state(key, pos, 1)
    assert copy_.randint(0, 48) == rs.randint(0, 48)


# --------------------------------------------------------------------- the game vs the reference


def _play_against_reference(level: str, settings: dict, backend: str, n: int = 4, episodes: int = 3, seed: int = 101):
    """n rows seeded seed+i, random actions, autoresets: every output and state equal to n reference games."""
    config = GameConfig(**settings)
    batch = GameBatch(n, config, EpisodeSource.sampled(level), stride=n, backend=backend)
    refs = [ReferenceGame(level, seed + i, **settings) for i in range(n)]
    batch.reset(None, [seed + i for i in range(n)])
    for ref in refs:
        ref.new_episode()
    actions = np.random.default_rng(seed)
    begin = np.zeros(n, dtype=np.bool_)
    finished = 0
    while finished < n * episodes:
        a = actions.integers(0, config.num_actions, size=n)
        obs = np.empty_like(batch.obs)
        result = batch.step(a, begin=begin, obs_out=obs)
        for i, ref in enumerate(refs):
            if begin[i]:
                ref.new_episode()
                reward, ended, over = 0.0, False, False
            else:
                reward, ended, over = ref.step(int(a[i]))
            assert result.reward[i] == reward and result.terminated[i] == over
            assert (result.trial_ended[i] >= 0) == ended
            np.testing.assert_array_equal(obs[i], ref.observation())
            assert batch.trial_rewards[i].tolist() == ref.trial_rewards
            np.testing.assert_array_equal(batch.matrix_events[i], ref.matrix_events)
            np.testing.assert_array_equal(batch.items[i], ref.items)
            assert batch.chemistry(i) == ref.chemistry
            finished += over
        begin = result.terminated.copy()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", SAMPLED_LEVELS)
def test_every_sampled_level_plays_exactly_as_the_reference_game(level, backend):
    _play_against_reference(level, {}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("settings", SETTINGS[1:], ids=["end_trial_action", "no_used_flags", "all_settings"])
def test_game_settings_play_exactly_as_the_reference_game(settings, backend):
    _play_against_reference(STANDARD, settings, backend)


@pytest.mark.skipif(not HAVE_KERNEL, reason="C kernel not built")
@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "end_trial_action", "no_used_flags", "all_settings"])
def test_both_backends_hold_identical_state_after_every_step(settings):
    n = 300
    config = GameConfig(**settings)
    batches = [GameBatch(n, config, EpisodeSource.sampled(STANDARD), stride=n, backend=b) for b in ("numpy", "c")]
    for b in batches:
        b.reset(None, list(range(n)))
    actions = np.random.default_rng(5)
    begin = np.zeros(n, dtype=np.bool_)
    for _ in range(230):  # past the end of the first episodes (200 steps by default)
        a = actions.integers(0, config.num_actions, size=n)
        results = [b.step(a, begin=begin) for b in batches]
        for name in STATE_ARRAYS:
            np.testing.assert_array_equal(getattr(batches[0], name), getattr(batches[1], name), err_msg=name)
        for x, y in zip(results[0], results[1]):
            np.testing.assert_array_equal(x, y)
        begin = results[0].terminated.copy()


@pytest.mark.skipif(not HAVE_KERNEL, reason="C kernel not built")
def test_a_step_split_over_threads_gives_the_same_state():
    n = 5000
    batches = [GameBatch(n, GameConfig(), EpisodeSource.sampled(STANDARD), stride=n, backend="c") for _ in range(2)]
    batches[1]._kernel.threads = 4
    for b in batches:
        b.reset(None, list(range(n)))
    actions = np.random.default_rng(6)
    begin = np.zeros(n, dtype=np.bool_)
    for _ in range(230):
        a = actions.integers(0, 40, size=n)
        results = [b.step(a, begin=begin) for b in batches]
        assert results[0].num_trial_ends == results[1].num_trial_ends
        begin = results[0].terminated.copy()
    for name in STATE_ARRAYS:
        np.testing.assert_array_equal(getattr(batches[0], name), getattr(batches[1], name), err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fixed_episodes_play_their_items_and_advance_the_cursor_by_the_stride(backend):
    sampled = ReferenceGame(STANDARD, 9)
    episodes, items = [], []
    for _ in range(5):
        sampled.new_episode()
        items.append(sampled.items.copy())
        episodes.append(FixedEpisode(sampled.chemistry, tuple(TrialItems.from_row(r) for r in sampled.items)))
    batch = GameBatch(3, GameConfig(), EpisodeSource.fixed(episodes), stride=3, backend=backend)
    batch.reset()
    assert batch.episode.tolist() == [0, 1, 2] and batch.next_episode.tolist() == [3, 4, 0]
    np.testing.assert_array_equal(batch.items[1], items[1])
    batch.begin([0, 2], [4, 4])
    assert batch.episode.tolist() == [4, 1, 4] and batch.next_episode.tolist() == [2, 4, 2]
    assert batch.chemistry(2) == episodes[4].chemistry
    with pytest.raises(ValueError, match=r"episode indices must be in 0\.\.4"):
        batch.begin([0], [5])


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_actions_and_unstarted_games_are_refused_before_any_change(backend):
    batch = GameBatch(3, GameConfig(), EpisodeSource.sampled(STANDARD), backend=backend)
    with pytest.raises(RuntimeError, match="not in an episode"):
        batch.step(np.zeros(3, dtype=np.int64))
    batch.reset(None, [1, 2, 3])
    before = {name: getattr(batch, name).copy() for name in STATE_ARRAYS}
    with pytest.raises(ValueError, match=r"action 40 of sub-env 2 out of range: each action must be in 0\.\.39"):
        batch.check_actions([0, 1, 40])
    with pytest.raises(ValueError, match=r"must be 3 integers"):
        batch.check_actions(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"must be 3 integers"):
        batch.check_actions([[0, 1, 2]])
    for name in STATE_ARRAYS:
        np.testing.assert_array_equal(getattr(batch, name), before[name], err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_copies_and_pickles_continue_exactly_as_the_original(backend):
    batch = GameBatch(4, GameConfig(), EpisodeSource.sampled(STANDARD), stride=4, backend=backend)
    batch.reset(None, [0, 1, 2, 3])
    actions = np.random.default_rng(0).integers(0, 40, size=(300, 4))
    for a in actions[:17]:
        batch.step(a)
    copies = [copy.deepcopy(batch), pickle.loads(pickle.dumps(batch))]
    for other in copies:
        assert other.kernel_name == batch.kernel_name
        assert all(not np.shares_memory(getattr(other, name), getattr(batch, name)) for name in STATE_ARRAYS)
    begin = np.zeros(4, dtype=np.bool_)
    for a in actions[17:]:
        results = [b.step(a, begin=begin) for b in [batch, *copies]]
        for other in results[1:]:
            np.testing.assert_array_equal(other.reward, results[0].reward)
        begin = results[0].terminated.copy()
    for other in copies:
        for name in STATE_ARRAYS:
            np.testing.assert_array_equal(getattr(other, name), getattr(batch, name), err_msg=name)


def test_a_game_view_steps_only_its_row():
    batch = GameBatch(3, GameConfig(), EpisodeSource.sampled(STANDARD), stride=3)
    batch.reset(None, [4, 5, 6])
    others = batch.obs[[0, 2]].copy()
    game = AlchemyGame.view(batch, 1)
    reference = ReferenceGame(STANDARD, 5)
    reference.new_episode()
    for action in np.random.default_rng(1).integers(0, 40, size=60).tolist():
        reward, _, over = reference.step(action)
        assert game.step(action) == (reward, over)
        np.testing.assert_array_equal(game.obs, reference.observation())
    np.testing.assert_array_equal(batch.obs[[0, 2]], others)
    with pytest.raises(IndexError, match="row 3 out of range"):
        AlchemyGame.view(batch, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("listened", [False, True], ids=["plain", "listened"])
def test_step_trial_says_which_steps_end_a_trial(backend, listened):
    """``step_trial`` is ``step`` plus whether the step ended a trial, with and without listeners."""
    source = EpisodeSource.sampled(STANDARD)
    game, twin = (AlchemyGame(num_trials=3, max_steps_per_trial=7, source=source, backend=backend) for _ in range(2))
    heard = []
    if listened:
        game.add_listener(lambda kind, *args: heard.append(kind))
    game.new_episode(seed=9)
    twin.new_episode(seed=9)
    ends = []
    for action in np.random.default_rng(2).integers(0, 40, size=21).tolist():  # the episode's 3 x 7 steps
        trial = twin.trial_number
        reward, over = twin.step(action)
        assert game.step_trial(action) == (reward, over or twin.trial_number != trial, over)
        ends.append(over or twin.trial_number != trial)
    assert over and ends.count(True) == 3 and ends[6] and ends[13] and ends[20]
    assert heard.count("trial_end") == (3 if listened else 0)
    with pytest.raises(EpisodeOver):
        game.step_trial(0)


def test_memory_per_game_stays_under_one_kilobyte_beyond_the_rng():
    batch = GameBatch(1000, GameConfig(), EpisodeSource.sampled(STANDARD))
    state, rng_bytes = batch.nbytes()
    assert state / 1000 <= 1024
    assert rng_bytes / 1000 == 624 * 4 + 4


def test_without_the_compiled_kernel_auto_falls_back_to_numpy_and_c_says_how_to_build(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_kernel(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "alchemy_gym.core" and fromlist and "_kernel" in fromlist:
            raise ImportError("no compiled kernel here")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_kernel)
    batch = GameBatch(2, GameConfig(), EpisodeSource.sampled(STANDARD))
    assert batch.kernel_name == "numpy"
    batch.reset(None, [0, 1])
    reference = ReferenceGame(STANDARD, 1)
    reference.new_episode()
    np.testing.assert_array_equal(batch.obs[1], reference.observation())
    with pytest.raises(ImportError, match="with a C compiler available.*backend='numpy'"):
        GameBatch(2, backend="c")
