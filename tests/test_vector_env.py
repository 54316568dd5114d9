"""The native vector env: sub-env i is the single env seeded with seed + i, with SyncVectorEnv's layout."""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from alchemy_gym.core.belief import ChemistrySeen, ContentGroup
from alchemy_gym.data import evaluation_episodes
from alchemy_gym.envs.vector import SymbolicAlchemyVectorEnv
from alchemy_gym.levels import LEVELS
from tests.test_core_batch import BACKENDS, HAVE_KERNEL

SAMPLED_IDS = [level.symbolic_id for level in LEVELS if level.symbolic_id and not level.is_evaluation]
EVALUATION_ID = "Alchemy/SymbolicEvaluation-v0"
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]


def make(n, env_id="Alchemy/SymbolicStandard-v0", **kwargs):
    return gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)


def assert_same(a, b, path="result"):
    """Equal values, dtypes, shapes and keys, recursively (dicts, object arrays, arrays, scalars)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert isinstance(b, np.ndarray) and b.dtype == object and a.shape == b.shape, path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{path}: {type(b)}"
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{path}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def play_side_by_side(env_id, n, steps, *, mode=AutoresetMode.NEXT_STEP, seed=7, backend="auto", **kwargs):
    """The native vector env against SyncVectorEnv over single envs: every output of every step equal."""
    native = make(n, env_id, autoreset_mode=mode, backend=backend, **kwargs)
    sync = SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(n)], autoreset_mode=mode)
    assert_same(native.reset(seed=seed), sync.reset(seed=seed), "reset")
    actions = np.random.default_rng(seed)
    ends = 0
    for t in range(steps):
        a = actions.integers(0, native.single_action_space.n, size=n)
        got, want = native.step(a), sync.step(a)
        assert_same(got, want, f"step {t}")
        ends += int(got[2].sum())
    assert ends >= n  # every sub-env went through at least one autoreset
    native.close()
    sync.close()


def test_make_vec_builds_the_native_vector_env():
    envs = make(4)
    assert isinstance(envs.unwrapped, SymbolicAlchemyVectorEnv)
    assert envs.observation_space.shape == (4, 39)
    assert envs.single_action_space == gym.spaces.Discrete(40)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


@pytest.mark.parametrize("env_id", SAMPLED_IDS)
def test_every_symbolic_level_equals_sync_vector_env_step_for_step(env_id):
    play_side_by_side(env_id, 3, 420)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES, ids=["next_step", "same_step"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"end_trial_action": True}, {"observe_used": False}, {"end_trial_action": True, "observe_used": False}],
    ids=["default", "end_trial_action", "no_used_flags", "both"],
)
def test_options_and_autoreset_modes_equal_sync_vector_env(kwargs, mode, backend):
    play_side_by_side("Alchemy/SymbolicStandard-v0", 3, 420, mode=mode, backend=backend, **kwargs)


def test_chemistry_observations_are_batched_with_ground_truth_and_random_contents():
    groups = ChemistrySeen(
        groups=[
            ContentGroup({"graph": range(12)}, (0.5, 0.0, 0.5)),
            ContentGroup({"potion_map": range(9), "stone_map": range(3), "rotation": range(4)}, (0.3, 0.0, 0.7)),
        ]
    )
    see = {"truth": "ground_truth", "hidden": "unknown", "mixed": groups}
    for mode in MODES:
        play_side_by_side("Alchemy/SymbolicStandard-v0", 3, 620, mode=mode, see_chemistries=see)


def test_belief_state_contents_point_to_the_sync_vector_env():
    with pytest.raises(ValueError, match="belief state.*vectorization_mode='sync'"):
        make(2, see_chemistries={"belief": "belief_state"})


def test_evaluation_level_plays_episodes_i_plus_k_n_and_accepts_episode_lists():
    n = 3
    envs = make(n, EVALUATION_ID)
    single = gym.make(EVALUATION_ID)
    eps = evaluation_episodes()
    _, info = envs.reset(seed=0)
    assert info["episode_index"].tolist() == [0, 1, 2] and info["_episode_index"].all()
    assert [g.chemistry for g in envs.unwrapped.games] == [eps[i].chemistry for i in range(n)]
    for option in ([10, 999, 5], (10, 999, 5), np.array([10, 999, 5])):
        obs, info = envs.reset(options={"episode": option})
        assert info["episode_index"].tolist() == [10, 999, 5]
        for i, e in enumerate([10, 999, 5]):
            np.testing.assert_array_equal(obs[i], single.reset(options={"episode": e})[0])
    _, info = envs.reset(options={"episode": 42})
    assert info["episode_index"].tolist() == [42, 42, 42]
    # each sub-env goes on N episodes further, through its autoresets, as the single env given those episodes
    envs.reset(options={"episode": [10, 999, 5]})
    expected = [[10, 13], [999, 2], [5, 8]]
    singles = [gym.make(EVALUATION_ID) for _ in range(n)]
    for i, single_env in enumerate(singles):
        single_env.reset(options={"episode": expected[i][0]})
    actions = np.random.default_rng(3)
    pending = [False] * n
    for _ in range(201):
        a = actions.integers(0, 40, size=n)
        obs, rewards, terminated, _, info = envs.step(a)
        for i, single_env in enumerate(singles):
            if pending[i]:
                want, r, t = single_env.reset(options={"episode": expected[i][1]})[0], 0.0, False
                assert info["episode_index"][i] == expected[i][1] and info["_episode_index"][i]
            else:
                want, r, t, _, _ = single_env.step(int(a[i]))
            np.testing.assert_array_equal(obs[i], want)
            assert rewards[i] == r and terminated[i] == t
            pending[i] = t


def test_reset_mask_resets_only_the_chosen_sub_envs():
    envs = make(3)
    first, _ = envs.reset(seed=1)
    envs.step(np.array([2, 2, 2]))
    stepped = envs.unwrapped.batch.obs.copy()
    obs, info = envs.reset(seed=1, options={"reset_mask": np.array([False, True, False])})
    np.testing.assert_array_equal(obs[1], first[1])
    np.testing.assert_array_equal(obs[[0, 2]], stepped[[0, 2]])
    assert info["_trial"].tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda e: e.step(np.array([0, 40])), r"action 40 of sub-env 1 out of range: each action must be in 0\.\.39"),
        (lambda e: e.step(np.array([-1, 0])), r"action -1 of sub-env 0 out of range"),
        (lambda e: e.step(np.array([0.0, 1.0])), "must be 2 integers"),
        (lambda e: e.step(np.array([0, 1, 2])), "must be 2 integers"),
        (lambda e: e.step(np.array([[0, 1]])), "must be 2 integers"),
        (lambda e: e.reset(options={"episode": [1, 2]}), "fixed episodes only"),
        (lambda e: e.reset(options={"level": 1}), "unknown reset options"),
        (lambda e: e.reset(seed=2**32 - 1), r"exceeds 2\*\*32-1"),
        (lambda e: e.reset(seed=[1]), "seed list has 1 entries, num_envs is 2"),
        (lambda e: e.reset(options={"reset_mask": np.array([1, 0])}), "bool numpy array"),
    ],
)
def test_bad_input_is_refused_before_any_state_changes(call, match):
    envs = make(2)
    envs.reset(seed=0)
    envs.step(np.array([3, 3]))
    batch = envs.unwrapped.batch
    before = copy.deepcopy(batch)
    with pytest.raises(ValueError, match=match):
        call(envs)
    for name in ("rng_key", "rng_pos", "chem", "trial", "steps", "stones", "potions", "obs", "trial_rewards"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(before, name), err_msg=name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_envs": 0}, "num_envs must be a positive int"),
        ({"autoreset_mode": AutoresetMode.DISABLED}, "DISABLED is not supported"),
        ({"autoreset_mode": "sometimes"}, "autoreset_mode 'sometimes' is not supported"),
        ({"render_mode": "ansi"}, "render_mode 'ansi' is not supported"),
        ({"num_threads": 0}, r"num_threads must be an int in 1\.\.16"),
        ({"backend": "gpu"}, "backend must be one of"),
    ],
)
def test_unsupported_settings_say_what_is_allowed(kwargs, match):
    kwargs = {"num_envs": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        SymbolicAlchemyVectorEnv(**kwargs)


def test_evaluation_episode_options_are_checked():
    envs = make(2, EVALUATION_ID)
    with pytest.raises(ValueError, match=r"lists 3 episodes: give one per sub-env \(2\) or one int for all"):
        envs.reset(options={"episode": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"episode 1000 out of range: allowed 0\.\.999"):
        envs.reset(options={"episode": [1, 1000]})
    with pytest.raises(ValueError, match="episode must be an int"):
        envs.reset(options={"episode": 1.5})


def test_render_returns_each_sub_envs_picture():
    envs = make(2, render_mode="rgb_array")
    singles = [gym.make("Alchemy/SymbolicStandard-v0", render_mode="rgb_array") for _ in range(2)]
    envs.reset(seed=4)
    for i, env in enumerate(singles):
        env.reset(seed=4 + i)
    for a in ([2, 15], [1, 0]):
        envs.step(np.array(a))
        for i, env in enumerate(singles):
            env.step(a[i])
        pictures = envs.render()
        assert len(pictures) == 2
        for picture, env in zip(pictures, singles):
            np.testing.assert_array_equal(picture, env.render())


def test_vector_env_checks():
    """What gymnasium's check_env asks of an env, asked of the vector env."""
    for mode in MODES:
        envs = make(4, autoreset_mode=mode, see_chemistries={"truth": "ground_truth"})
        obs, info = envs.reset(seed=3)
        assert envs.observation_space.contains(obs) and isinstance(info, dict)
        again, _ = envs.reset(seed=3)
        assert_same(obs, again)
        envs.action_space.seed(3)
        for _ in range(250):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            assert envs.observation_space.contains(obs)
            assert reward.dtype == np.float64 and reward.shape == (4,)
            assert terminated.dtype == truncated.dtype == np.bool_ and terminated.shape == truncated.shape == (4,)
            assert all(info["_" + key].shape == (4,) for key in info if not key.startswith("_"))
        assert envs.metadata["autoreset_mode"] == mode
        envs.close()


@pytest.mark.skipif(not HAVE_KERNEL, reason="C kernel not built")
def test_threads_give_the_same_steps():
    n = 2100
    one, two = make(n, num_threads=1), make(n, num_threads=2)
    assert two.unwrapped.num_threads == 2
    assert_same(one.reset(seed=5), two.reset(seed=5))
    actions = np.random.default_rng(0)
    for _ in range(210):
        a = actions.integers(0, 40, size=n)
        assert_same(one.step(a), two.step(a))


def test_copy_false_returns_the_same_buffer_each_step():
    envs = make(2, copy=False)
    obs, _ = envs.reset(seed=0)
    first, *_ = envs.step(np.array([2, 3]))
    second, *_ = envs.step(np.array([4, 5]))
    assert first is second
    copied = make(2)
    copied.reset(seed=0)
    copied.step(np.array([2, 3]))
    np.testing.assert_array_equal(second, copied.step(np.array([4, 5]))[0])


@pytest.mark.parametrize("env_id", [*SAMPLED_IDS, EVALUATION_ID])
def test_copies_and_pickles_of_vector_and_single_envs_continue_exactly(env_id):
    envs = make(3, env_id)
    single = gym.make(env_id)
    envs.reset(seed=11)
    single.reset(seed=11)
    actions = np.random.default_rng(2).integers(0, 40, size=(260, 3))
    for a in actions[:25]:
        envs.step(a)
        single.step(int(a[0]))
    vector_copies = [copy.deepcopy(envs), pickle.loads(pickle.dumps(envs))]
    single_copies = [copy.deepcopy(single), pickle.loads(pickle.dumps(single))]
    pending = False
    for a in actions[25:]:
        results = [e.step(a) for e in [envs, *vector_copies]]
        for other in results[1:]:
            assert_same(other, results[0])
        if pending:
            singles = [e.reset() for e in [single, *single_copies]]
            pending = False
        else:
            singles = [e.step(int(a[0])) for e in [single, *single_copies]]
            pending = singles[0][2]
        for other in singles[1:]:
            assert_same(other, singles[0])
