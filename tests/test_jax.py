"""The JAX env: the same game as the numpy core on the same episodes, the task's distributions, jit/vmap/scan."""

from __future__ import annotations

import zlib
from functools import partial

import gymnasium as gym
import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the JAX env is the optional 'jax' extra")
import jax.numpy as jnp  # noqa: E402

import alchemy_gym.jax as aj  # noqa: E402
from alchemy_gym.core.batch import GameBatch, GameConfig  # noqa: E402
from alchemy_gym.core.belief import ChemistrySeen  # noqa: E402
from alchemy_gym.core.episodes import EpisodeSource, FixedEpisode, TrialItems  # noqa: E402
from alchemy_gym.envs.info import INFO_KEYS  # noqa: E402
from alchemy_gym.levels import LEVELS  # noqa: E402

stats = pytest.importorskip("scipy.stats")

SAMPLED = [level for level in LEVELS if level.symbolic_id and not level.is_evaluation]
SETTINGS = [
    {},
    {"end_trial_action": True, "observe_used": False},
    {"num_trials": 3, "max_steps_per_trial": 9, "reward_weights": ((1.0, 2.0, -1.0), 0.5, 4.0)},
]


def sampled_episodes(level_name: str, count: int, seed: int, trials: int = 10) -> list[FixedEpisode]:
    """Episodes drawn by the numpy core (dm_alchemy's order) for a level."""
    batch = GameBatch(count, GameConfig(num_trials=trials), EpisodeSource.sampled(level_name), stride=count)
    batch.reset(None, [seed + i for i in range(count)])
    # play each to the end with no-ops so that every trial's items are drawn
    for _ in range(trials * 20):
        batch.step(np.zeros(count, dtype=np.int64))
    return [
        FixedEpisode(batch.chemistry(i), tuple(TrialItems.from_row(r) for r in batch.items[i])) for i in range(count)
    ]


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "end_trial_no_used", "short_weighted"])
@pytest.mark.parametrize("level", SAMPLED, ids=[lv.symbolic_id for lv in SAMPLED])
def test_same_chemistry_and_items_give_the_cores_observations_rewards_and_ends(level, settings):
    episodes = sampled_episodes(level.name, 4, seed=31, trials=settings.get("num_trials", 10))
    env, params = aj.make(level.symbolic_id, episodes=episodes, **settings)
    single = gym.make(level.symbolic_id, episodes=episodes, **settings)
    step = jax.jit(env.step)
    obs, state = env.reset(jax.random.key(0), params, episode=0)
    want, _ = single.reset()
    np.testing.assert_array_equal(np.asarray(obs), want)
    # a seed of the level's own (crc32, not hash(): that changes with PYTHONHASHSEED, and failures must reproduce)
    actions = np.random.default_rng(zlib.crc32(level.name.encode())).integers(0, env.num_actions, size=3000)
    finished = 0
    for t, action in enumerate(actions.tolist()):
        obs, state, reward, done, info = step(jax.random.key(t), state, jnp.int32(action), params)
        want, want_reward, terminated, _, want_info = single.step(action)
        assert float(reward) == np.float32(want_reward) and bool(done) == terminated
        for key in INFO_KEYS:  # the same info schema: keys, dtypes and values
            value = np.asarray(info[key.name])
            assert value.dtype == key.dtype and value == want_info[key.name], (t, key.name)
        if terminated:
            want, _ = single.reset()  # the JAX step already returns the next episode's first observation
            finished += 1
        np.testing.assert_array_equal(np.asarray(obs), want, err_msg=f"step {t}")
    assert finished >= 4  # every given episode played, and the cursor wrapped


def test_evaluation_level_plays_the_fixed_episodes_by_index_and_stride():
    env, params = aj.make("Alchemy/SymbolicEvaluation-v0")
    single = gym.make("Alchemy/SymbolicEvaluation-v0")
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None, 0)))
    episodes = jnp.array([0, 17, 999])
    obs, state = reset(jax.random.split(jax.random.key(0), 3), params, episodes)
    for row, e in enumerate([0, 17, 999]):
        np.testing.assert_array_equal(np.asarray(obs[row]), single.reset(options={"episode": e})[0])
    params3 = params.replace(episode_stride=jnp.int32(3))
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))
    for _ in range(200):
        obs, state, reward, done, _ = step(jax.random.key(1), state, jnp.zeros(3, jnp.int32), params3)
    assert done.all() and np.asarray(state.episode).tolist() == [3, 20, 2]
    np.testing.assert_array_equal(np.asarray(obs[1]), single.reset(options={"episode": 20})[0])


def _many_resets(env_id: str, n: int = 60_000):
    env, params = aj.make(env_id)
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(jax.random.key(3), n), params)
    return env, params, state


def _assert_distribution(counts: np.ndarray, probabilities: np.ndarray, what: str):
    counts = np.asarray(counts, dtype=np.float64)
    expected = probabilities / probabilities.sum() * counts.sum()
    p_value = stats.chisquare(counts, expected).pvalue
    assert p_value > 1e-4, f"{what}: chi-square p = {p_value:.2g}"


def test_sampled_chemistries_follow_the_prior_of_the_task():
    from alchemy_gym.core.chemistry import ChemistrySampler, LevelRules

    env, params, state = _many_resets("Alchemy/SymbolicStandard-v0")
    chem = np.asarray(state.chem)
    _assert_distribution(np.bincount(chem[:, 0], minlength=48), np.ones(48), "potion maps")
    _assert_distribution(np.bincount(chem[:, 1], minlength=8), np.ones(8), "stone maps")
    _assert_distribution(np.bincount(chem[:, 3], minlength=4), np.ones(4), "rotations")
    sampler = ChemistrySampler(
        LevelRules.from_level_name("alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck")
    )
    index = {g: i for i, g in enumerate(sampler.graphs)}
    counts = np.bincount([index[g] for g in chem[:, 2].tolist()], minlength=len(index))
    _assert_distribution(counts, sampler.prior.astype(np.float64), "graphs (109, §1.6 prior)")
    # levels without random maps or rotations keep them fixed
    _, _, fixed = _many_resets("Alchemy/SymbolicAllFixed-v0", 2000)
    assert set(np.asarray(fixed.chem)[:, :2].reshape(-1).tolist()) == {7} and not np.asarray(fixed.chem)[:, 3].any()


def test_items_of_every_trial_are_uniform_and_independent_of_the_chemistry():
    env, params, state = _many_resets("Alchemy/SymbolicStandard-v0", 20_000)
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))
    stones, potions = [np.asarray(state.stones)], [np.asarray(state.potions)]
    for t in range(60):  # three trials
        _, state, _, _, _ = step(jax.random.key(t), state, jnp.zeros(20_000, jnp.int32), params)
        if t % 20 == 19:
            stones.append(np.asarray(state.stones))
            potions.append(np.asarray(state.potions))
    stones, potions = np.concatenate(stones).reshape(-1), np.concatenate(potions).reshape(-1)
    _assert_distribution(np.bincount(stones, minlength=8), np.ones(8), "latent stones")
    _assert_distribution(np.bincount(potions, minlength=6), np.ones(6), "latent potions")
    # slot 0's stone does not depend on the rotation drawn (a contingency test)
    chem = np.asarray(state.chem)
    table = np.zeros((4, 8))
    np.add.at(table, (chem[:, 3], np.asarray(state.stones)[:, 0]), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-4


def test_jit_vmap_and_scan_run_whole_episodes():
    env, params = aj.make("Alchemy/SymbolicStandard-v0")
    n = 64
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), n), params)
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    @jax.jit
    def rollout(state, key):
        def body(carry, key):
            state = carry
            keys = jax.random.split(key, n + 1)
            actions = jax.vmap(env.action_space(params).sample)(keys[1:])
            obs, state, reward, done, info = vstep(keys[1:], state, actions, params)
            return state, (reward, done, info["episode_return"])

        return jax.lax.scan(body, state, jax.random.split(key, 450))

    state, (rewards, dones, returns) = rollout(state, jax.random.key(1))
    rewards, dones, returns = np.asarray(rewards), np.asarray(dones), np.asarray(returns)
    assert dones.shape == (450, n) and dones.sum() == 2 * n  # every env ends episodes at steps 200 and 400
    assert dones[199].all() and dones[399].all()
    for env_index in range(n):
        episode_rewards = np.split(rewards[:, env_index], [200, 400])
        assert returns[199, env_index] == pytest.approx(episode_rewards[0].sum(), abs=1e-4)
        assert returns[399, env_index] == pytest.approx(episode_rewards[1].sum(), abs=1e-4)
    assert env.observation_space(params).contains(env.get_obs(jax.tree_util.tree_map(lambda x: x[0], state), params))


@pytest.mark.parametrize("settings", [{}, {"end_trial_action": True}], ids=["default", "end_trial"])
@pytest.mark.parametrize("level", [*SAMPLED, "evaluation"], ids=[lv.symbolic_id for lv in SAMPLED] + ["evaluation"])
def test_belief_state_is_the_cores_step_for_step(level, settings):
    if level == "evaluation":
        env_id, given = "Alchemy/SymbolicEvaluation-v0", {}
    else:
        env_id, given = level.symbolic_id, {"episodes": sampled_episodes(level.name, 3, seed=31)}
    env, params = aj.make(env_id, belief_state=True, **given, **settings)
    single = gym.make(env_id, see_chemistries={"belief": "belief_state"}, **given, **settings)
    step, belief_of = jax.jit(env.step), jax.jit(env.belief_state)
    _, state = env.reset(jax.random.key(0), params, episode=0)
    want, _ = single.reset(options={"episode": 0} if not given else None)
    np.testing.assert_array_equal(np.asarray(belief_of(state)), want["belief"])
    seen = set()
    for t, action in enumerate(np.random.default_rng(7).integers(0, env.num_actions, size=1300).tolist()):
        _, state, _, done, _ = step(jax.random.key(t), state, jnp.int32(action), params)
        want, _, terminated, _, _ = single.step(action)
        assert bool(done) == terminated
        if terminated:
            want, _ = single.reset(options={"episode": int(state.episode)} if not given else None)
        got = np.asarray(belief_of(state))
        np.testing.assert_array_equal(got, want["belief"], err_msg=f"step {t}")
        seen.add(got.tobytes())
    # the belief learnt things: with random maps it goes through many values, with fixed maps (only the
    # graph to learn) at least from "nothing known" to "all known"
    assert len(seen) >= (10 if params.randomize_maps else 2)


def test_belief_state_needs_the_option_and_checks_it():
    env, params = aj.make("Alchemy/SymbolicStandard-v0")
    _, state = env.reset(jax.random.key(0), params)
    assert state.belief is None
    with pytest.raises(ValueError, match=r"make it with alchemy_gym.jax.make\(env_id, belief_state=True\)"):
        env.belief_state(state)
    with pytest.raises(ValueError, match="belief_state must be True or False, got 'yes'"):
        aj.make("Alchemy/SymbolicStandard-v0", belief_state="yes")
    with pytest.raises(ValueError, match=r"belief state: make\(..., belief_state=True\)"):
        aj.make("Alchemy/SymbolicStandard-v0", see_chemistries={"b": "belief_state"})


ALL_SYMBOLIC = [level.symbolic_id for level in LEVELS if level.symbolic_id]


@pytest.mark.parametrize("settings", [{}, {"end_trial_action": True}], ids=["default", "end_trial"])
@pytest.mark.parametrize("env_id", ALL_SYMBOLIC)
def test_vmapped_steps_are_each_envs_own_steps_through_autoresets(env_id, settings):
    """Under vmap the next trial and the autoreset are computed only on steps where some env needs them
    (where_any). Every env must still step exactly as it does alone (whose steps are the core's, above),
    through two autoresets, with trials that end at different steps (the end-trial action), the belief
    included; on the standard task also under a vmap of a vmap."""
    env, params = aj.make(env_id, belief_state=True, **settings)
    n, steps = 6, 450
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(3), n), params)
    rng = np.random.default_rng(5)
    actions = rng.integers(0, env.num_actions, size=(steps, n)).astype(np.int32)
    if settings:
        actions[rng.random((steps, n)) < 0.08] = 0  # frequent trial ends, at different steps in each env
    key = jax.random.key(9)

    def play(step, belief_of, state, actions):
        def body(state, a):
            obs, state, reward, done, info = step(key, state, a, params)
            return state, (obs, reward, done, info["trial_ended"], belief_of(state))

        return jax.lax.scan(body, state, actions)[1]

    vmapped = jax.vmap(env.step, in_axes=(None, 0, 0, None)), jax.vmap(env.belief_state)
    batched = jax.jit(partial(play, *vmapped))(state, jnp.asarray(actions))
    alone = jax.jit(partial(play, env.step, env.belief_state))
    for i in range(n):
        got = alone(jax.tree_util.tree_map(lambda x, i=i: x[i], state), jnp.asarray(actions[:, i]))
        for what, a, b in zip(("obs", "reward", "done", "trial_ended", "belief"), got, batched):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:, i], err_msg=f"env {i}: {what}")
    ends, dones = np.asarray(batched[3]), np.asarray(batched[2])
    assert dones.sum(axis=0).min() >= 2  # every env went through two autoresets
    if settings:
        assert (ends.any(axis=1) != ends.all(axis=1)).any()  # trials ended at different steps
    if env_id == "Alchemy/SymbolicStandard-v0" and settings:  # a vmap of a vmap (2 x 3) gives the same steps
        nested_state = jax.tree_util.tree_map(lambda x: x.reshape(2, 3, *x.shape[1:]), state)
        nested = jax.jit(partial(play, jax.vmap(vmapped[0], in_axes=(None, 0, 0, None)), jax.vmap(vmapped[1])))
        for got, want in zip(nested(nested_state, jnp.asarray(actions.reshape(steps, 2, 3))), batched):
            np.testing.assert_array_equal(np.asarray(got).reshape(np.asarray(want).shape), np.asarray(want))


def test_where_any_computes_only_where_asked_with_batched_or_shared_predicates():
    from alchemy_gym.jax.env import where_any

    def fn(x, y):
        return x * 10 + y

    x, fallback = jnp.arange(4), -jnp.ones(4, jnp.int32)
    # one env
    assert int(where_any(jnp.bool_(True), fn, (x[1], 5), fallback[1])) == 15
    assert int(where_any(jnp.bool_(False), fn, (x[1], 5), fallback[1])) == -1
    # a predicate per env, a shared argument
    pred = jnp.array([True, False, True, False])
    got = jax.vmap(lambda p, a, f: where_any(p, fn, (a, 5), f))(pred, x, fallback)
    np.testing.assert_array_equal(np.asarray(got), [5, -1, 25, -1])
    # one predicate for the whole batch
    got = jax.vmap(lambda a, f: where_any(jnp.bool_(False), fn, (a, 5), f))(x, fallback)
    np.testing.assert_array_equal(np.asarray(got), [-1, -1, -1, -1])
    got = jax.jit(jax.vmap(lambda a, f: where_any(jnp.bool_(True), fn, (a, 5), f)))(x, fallback)
    np.testing.assert_array_equal(np.asarray(got), [5, 15, 25, 35])


def test_invalid_actions_are_no_ops_under_jit_and_errors_in_checked_steps():
    env, params = aj.make("Alchemy/SymbolicStandard-v0")
    _, state = env.reset(jax.random.key(0), params)
    step = jax.jit(env.step)
    key = jax.random.key(1)
    for bad in (-5, 40, 1000):
        got = step(key, state, jnp.int32(bad), params)
        want = step(key, state, jnp.int32(0), params)
        for x, y in zip(jax.tree_util.tree_leaves(got[:4]), jax.tree_util.tree_leaves(want[:4])):
            np.testing.assert_array_equal(x, y)
        assert not bool(got[4]["valid_action"])
    with pytest.raises(ValueError, match=r"action 40 out of range: the action space is Discrete\(40\)"):
        env.checked_step(key, state, 40, params)
    with pytest.raises(ValueError, match="must be integers"):
        env.checked_step(key, state, 1.5, params)
    with pytest.raises(TypeError, match="outside jax.jit"):
        jax.jit(lambda a: env.checked_step(key, state, a, params))(jnp.int32(1))
    assert env.checked_step(key, state, 2, params)[2] == 0.0


def test_unknown_ids_and_bad_settings_raise_before_tracing():
    with pytest.raises(ValueError, match="no symbolic version"):
        aj.make("Alchemy/AllFixedShaping-v0")
    with pytest.raises(ValueError, match="unknown Alchemy level"):
        aj.make("Alchemy/Nope-v0")
    with pytest.raises(ValueError, match="max_steps_per_trial=0 out of range"):
        aj.make("Alchemy/SymbolicStandard-v0", max_steps_per_trial=0)
    with pytest.raises(TypeError, match="unknown symbolic env setting"):
        aj.make("Alchemy/SymbolicStandard-v0", trials=3)
    with pytest.raises(ValueError, match="not settings of the JAX env"):
        aj.make("Alchemy/SymbolicStandard-v0", render_mode="rgb_array")
    env, params = aj.make("alchemy/all_fixed")  # dm_alchemy names too
    assert env.name == "Alchemy/SymbolicAllFixed-v0" and env.action_space(params).n == 40


def test_ground_truth_chemistry_observation_is_the_cores():
    env, params, state = _many_resets("Alchemy/SymbolicStandard-v0", 50)
    truth = jax.vmap(env.ground_truth)(state)
    seen = ChemistrySeen(content="ground_truth")
    masks = np.ones((50, seen.size), dtype=np.bool_)
    np.testing.assert_array_equal(np.asarray(truth), seen.observe_rows(np.asarray(state.chem), masks))


def test_purejaxrl_style_ppo_example_trains_in_one_jit():
    pytest.importorskip("optax", reason="the JAX PPO example uses optax (the 'jax' extra)")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "jax_ppo.py"
    spec = importlib.util.spec_from_file_location("jax_ppo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--total-timesteps", str(16 * 25 * 20), "--num-envs", "16", "--num-steps", "25",
                       "--hidden", "16", "--minibatches", "2", "--update-epochs", "1"])  # fmt: skip
    assert out["steps"] == 16 * 25 * 20 and len(out["mean_returns"]) == 20
    finished = out["mean_returns"][~np.isnan(out["mean_returns"])]
    assert len(finished) == 2  # the 16 envs end their 200-step episodes at steps 200 and 400 of 500
    assert ((-90 <= finished) & (finished <= 450)).all()
