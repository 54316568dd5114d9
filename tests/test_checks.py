"""One check per setting and per action, the same at every entry point (core, single env, vector env, JAX env),
and the gaps a stress run found: non-finite or huge reward weights, the step limit's real bound, unsigned actions
of 2**63 and more, masked arrays, the chemistry cache's size."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import alchemy_gym  # noqa: F401
from alchemy_gym.core.batch import GameBatch, GameConfig
from alchemy_gym.core.checks import MAX_REWARD_WEIGHT, MAX_STEPS_PER_TRIAL, check_actions
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import CHEMISTRY_CACHE_SIZE, EpisodeSource, chemistry_of, sub_env_seeds
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv

ENV = "Alchemy/SymbolicStandard-v0"
STANDARD = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"


def _vector(n: int = 2, **settings):
    return gym.make_vec(ENV, num_envs=n, vectorization_mode="vector_entry_point", **settings)


def _entry_points():
    """Every place that takes the game's settings: the core, the single env, the vector env (and the JAX env)."""
    points = [("GameConfig", lambda **kw: GameConfig(**kw)), ("gym.make", lambda **kw: gym.make(ENV, **kw))]
    points.append(("make_vec", lambda **kw: _vector(**kw)))
    try:
        import alchemy_gym.jax as aj

        points.append(("jax.make", lambda **kw: aj.make(ENV, **kw)))
    except ImportError:
        pass
    return points


ENTRY_POINTS = _entry_points()
IDS = [name for name, _ in ENTRY_POINTS]


# ------------------------------------------------------------------------------------ reward weights


@pytest.mark.parametrize("make", [m for _, m in ENTRY_POINTS], ids=IDS)
@pytest.mark.parametrize(
    "weights",
    [
        ((float("nan"), 1, 1), 0, 12),
        ((1, 1, 1), float("inf"), 12),
        ((1, 1, 1), 0, -float("inf")),
        ((1e308, 1e308, 1e308), 0, 12),  # every value would be inf, and inf - inf a NaN reward
        ((1, 1, 1), 0, 2 * MAX_REWARD_WEIGHT),
    ],
    ids=["nan", "inf", "-inf", "1e308", "over"],
)
def test_non_finite_or_huge_reward_weights_are_refused_naming_the_range(make, weights):
    with pytest.raises(ValueError, match=r"must be a finite number in -1e\+06\.\.1e\+06"):
        make(reward_weights=weights)


@pytest.mark.parametrize("make", [m for _, m in ENTRY_POINTS], ids=IDS)
def test_reward_weights_at_the_bound_are_taken(make):
    make(reward_weights=((MAX_REWARD_WEIGHT, -MAX_REWARD_WEIGHT, 0.5), 0, MAX_REWARD_WEIGHT))


def test_the_largest_weights_give_finite_rewards():
    config = GameConfig(reward_weights=((MAX_REWARD_WEIGHT,) * 3, MAX_REWARD_WEIGHT, MAX_REWARD_WEIGHT))
    assert config.values[-1] == 5 * MAX_REWARD_WEIGHT and all(np.isfinite(config.values))
    assert np.isfinite(np.float32(30 * config.values[-1]))  # an episode's return in the JAX env's float32


# ----------------------------------------------------------------------------------- the step limit


@pytest.mark.parametrize("make", [m for _, m in ENTRY_POINTS], ids=IDS)
def test_a_step_limit_of_2_31_is_refused_naming_the_real_bound(make):
    with pytest.raises(ValueError, match=r"max_steps_per_trial=2147483648 out of range: allowed 1\.\.2\*\*31-1"):
        make(max_steps_per_trial=2**31)


@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_a_step_limit_of_2_31_minus_1_is_taken_and_plays(backend):
    env = gym.make(ENV, max_steps_per_trial=MAX_STEPS_PER_TRIAL, backend=backend)
    env.reset(seed=0)
    for _ in range(50):  # far from the limit: the trial goes on
        _, _, terminated, _, info = env.step(0)
        assert not terminated and not info["trial_ended"] and info["trial"] == 0
    envs = _vector(max_steps_per_trial=MAX_STEPS_PER_TRIAL, backend=backend)
    envs.reset(seed=0)
    for _ in range(50):
        _, _, terminated, _, info = envs.step(np.zeros(2, dtype=np.int64))
        assert not terminated.any() and not info["trial_ended"].any() and (info["trial"] == 0).all()


def test_a_step_limit_of_2_31_minus_1_plays_in_jax():
    aj = pytest.importorskip("alchemy_gym.jax")
    import jax

    env, params = aj.make(ENV, max_steps_per_trial=MAX_STEPS_PER_TRIAL)
    obs, state = jax.jit(env.reset)(jax.random.key(0), params)
    step = jax.jit(env.step)
    for t in range(30):
        obs, state, _, done, info = step(jax.random.key(t), state, 0, params)
        assert not bool(done) and not bool(info["trial_ended"])
    assert int(state.steps) == 30


# ------------------------------------------------------------------------------------------ actions


def test_an_unsigned_action_of_2_63_or_more_is_named_as_given():
    envs = _vector()
    envs.reset(seed=0)
    for value in (2**63, 2**64 - 1, 40):
        actions = np.array([0, value], dtype=np.uint64)
        with pytest.raises(
            ValueError, match=rf"action {value} of sub-env 1 out of range: each action must be in 0\.\.39"
        ):
            envs.step(actions)
    envs.step(np.array([3, 4], dtype=np.uint64))  # unsigned actions in range are taken


def test_an_unsigned_action_is_named_as_given_by_both_kernels():
    for backend in ("numpy", "auto"):
        batch = GameBatch(3, backend=backend)
        with pytest.raises(ValueError, match=r"action 18446744073709551615 of sub-env 2 out of range"):
            batch.check_actions(np.array([1, 2, 2**64 - 1], dtype=np.uint64))
        with pytest.raises(ValueError, match=r"action -5 of sub-env 0 out of range"):
            batch.check_actions(np.array([-5, 1, 2], dtype=np.int8))


def test_a_masked_action_is_refused_and_an_unmasked_masked_array_is_its_data():
    envs = _vector(3)
    envs.reset(seed=0)
    hidden = np.ma.masked_array([1, 2, 3], mask=[False, True, False])
    with pytest.raises(ValueError, match=r"masked array with 1 masked entries \(the first at index 1\)"):
        envs.step(hidden)
    plain = _vector(3)
    plain.reset(seed=0)
    unmasked = np.ma.masked_array([1, 2, 3], mask=False)
    got, want = envs.step(unmasked), plain.step(np.array([1, 2, 3]))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_a_masked_or_unsigned_action_of_the_jax_env():
    aj = pytest.importorskip("alchemy_gym.jax")
    import jax

    env, params = aj.make(ENV)
    _, state = env.reset(jax.random.key(0), params)
    key = jax.random.key(1)
    with pytest.raises(ValueError, match=r"masked array with 1 masked entries"):
        env.checked_step(key, state, np.ma.masked_array(3, mask=True), params)
    with pytest.raises(
        ValueError, match=r"action 9223372036854775808 out of range: the action space is Discrete\(40\)"
    ):
        env.checked_step(key, state, np.uint64(2**63), params)
    reward = env.checked_step(key, state, np.ma.masked_array(2, mask=False), params)[2]
    assert reward == env.checked_step(key, state, 2, params)[2]


def test_the_action_check_names_what_is_allowed():
    with pytest.raises(
        ValueError, match=r"actions must be 2 integers \(an int array of shape \(2,\), each in 0\.\.39\)"
    ):
        check_actions(np.array([0.5, 1.0]), (2,), 40)
    with pytest.raises(ValueError, match=r"action 41 at flat index 3 out of range"):
        check_actions(np.array([[0, 1], [2, 41]]), (2, 2), 40)
    assert check_actions([1, 2], (2,), 40).dtype == np.int64


# ----------------------------------------------------------------------------- the chemistry cache


def test_the_chemistry_cache_is_small_and_bounded():
    """Chemistry objects of a batch's rows are shared through a bounded LRU cache (a stress run grew the old
    unbounded one by 84 MB): many distinct chemistries leave at most CHEMISTRY_CACHE_SIZE behind."""
    chemistry_of.cache_clear()
    batch = GameBatch(512, GameConfig(max_steps_per_trial=1, num_trials=1), EpisodeSource.sampled(STANDARD))
    batch.reset(None, list(range(512)))
    seen = set()
    for _ in range(3 * CHEMISTRY_CACHE_SIZE // 512 + 2):
        seen.update(batch.chemistries(range(512)))
        batch.step(np.zeros(512, dtype=np.int64), begin=np.ones(512, dtype=np.bool_))
    assert len(seen) > CHEMISTRY_CACHE_SIZE  # more distinct chemistries than the cache holds
    assert chemistry_of.cache_info().currsize <= CHEMISTRY_CACHE_SIZE <= 8192
    row = batch.chem[7].tolist()
    assert batch.chemistry(7) == Chemistry(*row) and batch.chemistry(7) is batch.chemistry(7)


# ------------------------------------------------------------------------ seeds, counts, render modes


def test_the_symbolic_vector_env_takes_its_seeds_in_any_array_form():
    """``seed=S`` seeds sub-env ``i`` with ``S + i``; a list, a tuple, a 1-d array or a 0-d array (an info value)
    give the same episodes."""
    envs = _vector(3)
    first, _ = envs.reset(seed=5)
    for seed in ([5, 6, 7], (5, 6, 7), np.array([5, 6, 7], dtype=np.uint32), np.array(5)):
        np.testing.assert_array_equal(envs.reset(seed=seed)[0], first)
    with pytest.raises(ValueError, match=r"seed 4294967294 \+ 2 \(one seed per sub-env\) exceeds 2\*\*32-1"):
        envs.reset(seed=2**32 - 2)
    with pytest.raises(ValueError, match=r"seed must be an int in 0\.\.2\*\*32-1 \(numpy RandomState\), got -1"):
        envs.reset(seed=[1, 2, -1])
    envs.close()


def test_sub_env_seeds_without_a_bound_take_any_non_negative_int():
    assert sub_env_seeds(2**40, 2, high=None) == [2**40, 2**40 + 1]
    assert sub_env_seeds([2**40, None], 2, high=None) == [2**40, None]
    for bad in (-1, True, 1.5, "1", [1, "2"]):
        with pytest.raises(ValueError, match="seed must be a non-negative int"):
            sub_env_seeds(bad, 2, high=None)
    with pytest.raises(ValueError, match="seed list has 1 entries, num_envs is 2"):
        sub_env_seeds([1], 2, high=None)


def _rpc_settings(**settings):
    pytest.importorskip("dm_env_rpc")
    from alchemy_gym.envs.rpc import RpcEnvConfig

    return RpcEnvConfig.parse(STANDARD, address="127.0.0.1:1", **settings)  # checked before anything starts


@pytest.mark.parametrize(
    ("make", "allowed"),
    [
        (SymbolicAlchemyEnv, "None, 'ansi' or 'rgb_array'"),
        (_vector, "None or 'rgb_array'"),
        (_rpc_settings, "None or 'rgb_array'"),
    ],
    ids=["single", "vector", "3D"],
)
def test_every_env_family_checks_its_render_modes_alike(make, allowed):
    with pytest.raises(ValueError, match=f"render_mode 'bogus' is not supported: allowed {allowed}"):
        make(render_mode="bogus")
    assert make(render_mode="rgb_array").render_mode == "rgb_array"


@pytest.mark.parametrize("count", [0, -1, True, 2.0, "2"])
def test_counts_of_games_and_envs_are_checked_alike(count):
    with pytest.raises(ValueError, match=f"num_games must be a positive int, got {count!r}"):
        GameBatch(count)
    with pytest.raises(ValueError, match=f"num_envs must be a positive int, got {count!r}"):
        _vector(count)
