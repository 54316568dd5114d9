"""RL²: the JAX trainer (alchemy_gym.baselines.rl2) and the numpy agent (alchemy_gym.agents.rl2)."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import alchemy_gym  # noqa: F401  (registers the IDs)
from alchemy_gym.agents import make_agent, run_env_episode, run_episode
from alchemy_gym.agents import rl2 as net
from alchemy_gym.core.game import AlchemyGame
from alchemy_gym.data import evaluation_source

TINY = ["--num-envs", "4", "--num-steps", "20", "--hidden", "8", "--head", "8", "--minibatches", "2",
        "--update-epochs", "1", "--log-every", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent compilation cache for this module: the trainer's runs of one size compile once."""
    jax = pytest.importorskip("jax")
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = [getattr(jax.config, name) for name in names]
    jax.config.update(names[0], str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update(names[1], 0.0)
    yield
    for name, value in zip(names, before):
        jax.config.update(name, value)


def _jax():
    pytest.importorskip("optax", reason="the RL² trainer needs the 'jax' extra")
    from alchemy_gym.baselines import rl2

    return rl2


def _play_numpy(agent, episodes) -> np.ndarray:
    game = AlchemyGame(source=evaluation_source())
    rows = []
    for i in episodes:
        game.new_episode(i)
        rows.append(run_episode(agent, game, i))
    return np.array(rows)


# ------------------------------------------------------------------ the packaged agents (numpy only)


@pytest.mark.parametrize("name", list(net.AGENTS))
def test_packaged_agents_play_through_the_game_and_the_gymnasium_env(name):
    agent = make_agent(name)
    assert agent.name == name and agent.inputs == net.AGENTS[name]
    on_game = _play_numpy(agent, [3, 4])
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    assert run_env_episode(agent, env, episode=4) == on_game[1].tolist()
    # it plays no action that the observation shows to have no effect
    game = AlchemyGame(source=evaluation_source())
    game.new_episode(7)
    agent.reset(game, 7)
    while not game.episode_over:
        mask = net.action_mask(np.asarray(game.obs), np)
        action = agent.act(game)
        assert mask[action], (action, game.obs)
        game.step(action)


def test_the_numpy_agent_needs_neither_jax_nor_torch():
    code = (
        "import sys; from alchemy_gym.agents import make_agent; from alchemy_gym.evaluation import run_episodes, "
        "resolve_level; run_episodes('rl2-belief', resolve_level('alchemy/evaluation_episodes'), [0], 0); "
        "print(sorted(m for m in ('jax', 'torch', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_weights_files_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RL² weights file '.*nothing.npz' not found: expected an .npz"):
        net.RL2Agent(tmp_path / "nothing.npz")
    with pytest.raises(ValueError, match="unknown RL² agent 'rl3': allowed rl2, rl2-belief, rl2-ground-truth"):
        net.packaged_weights("rl3")
    params, meta = net.load_weights(net.packaged_weights("rl2-belief"))
    with pytest.raises(ValueError, match="holds a policy for inputs 'belief', expected 'symbolic'"):
        net.load_weights(net.packaged_weights("rl2-belief"), inputs="symbolic")
    bad = dict(params, gru_wh=params["gru_wh"][:, :-1])
    net.save_weights(tmp_path / "bad.npz", bad, meta)
    want = (meta["hidden"], 3 * meta["hidden"])
    with pytest.raises(ValueError, match=rf"parameter 'gru_wh' has shape .*, expected \({want[0]}, {want[1]}\)"):
        net.RL2Agent(tmp_path / "bad.npz")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(ValueError, match="not an RL² weights file"):
        net.load_weights(tmp_path / "plain.npz")
    agent = net.RL2Agent(net.packaged_weights("rl2"))
    with pytest.raises(ValueError, match="plays the standard game settings"):
        agent.reset(AlchemyGame(end_trial_action=True))


# ------------------------------------------------------------------ the trainer against the numpy agent


def _replay_rollout(rl2, inputs: str, rollouts: int, num_steps: int):
    """A trainer rollout, replayed step by step in the JAX env and in numpy: checks that the chemistry input of
    each step is the env's at that step and that the numpy policy gives the trainer's probabilities."""
    import jax

    cfg = dict(rl2.DEFAULTS, inputs=inputs, num_envs=3, num_steps=num_steps, hidden=16, head=8)
    init, _, rollout = rl2.make_train(cfg)
    state = jax.jit(init)(jax.random.key(4))
    params = {k: np.asarray(v) for k, v in state["params"].items()}
    params["pol_out"] = params["pol_out"] * 200  # a policy far from uniform, so that probabilities differ
    env, env_params, _ = rl2.make_env(cfg["env_id"], inputs)
    one = {"belief": lambda s: env.belief_state(s, env_params), "ground-truth": env.ground_truth}[inputs]
    chemistry = jax.jit(jax.vmap(one))
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))
    env_state = state["env"]
    h = np.zeros((3, cfg["hidden"]))
    prev_obs, prev_action, prev_reward = np.asarray(state["obs"]), np.zeros(3, int), np.zeros(3)
    looked_ahead_would_differ = False
    for r in range(rollouts):
        roll, traj = rollout(params, state, jax.random.key(10 + r))
        state = dict(state, **roll)
        step_keys = jax.random.split(jax.random.key(10 + r), num_steps)  # the rollout's: its autoresets are ours
        for t in range(num_steps):
            obs, x = np.asarray(traj["obs"][t]), np.asarray(traj["x"][t])
            chem = np.asarray(chemistry(env_state))  # what the env reports in the state the agent acts in
            np.testing.assert_array_equal(x[:, -net.CHEMISTRY_SIZE :], chem * np.float32(2) - np.float32(1))
            steps, trials = np.asarray(env_state.steps), np.asarray(env_state.trial)
            mine = net.network_inputs(obs, prev_obs, prev_action, prev_reward, steps, trials, chem, np, np.float64)
            np.testing.assert_allclose(mine, x, rtol=1e-6, atol=1e-6)
            h = net.core_step(params, mine, h, np)
            probs = net.softmax(net.heads(params, h, obs, np)[0], np)
            action = np.asarray(traj["action"][t])
            np.testing.assert_allclose(probs[np.arange(3), action], np.exp(traj["logp"][t]), rtol=2e-5, atol=1e-7)
            _, env_state, reward, done, _ = step(jax.random.split(step_keys[t])[1], env_state, action, env_params)
            looked_ahead_would_differ |= not np.array_equal(np.asarray(chemistry(env_state)), chem)
            done = np.asarray(done)
            prev_obs, prev_action = obs, np.where(done, 0, action)  # (the previous observation is unused after 0)
            prev_reward = np.where(done, 0.0, np.asarray(reward))
            h = np.where(done[:, None], 0.0, h)
    assert looked_ahead_would_differ  # the check above can fail: the next state's chemistry is another one


def test_belief_inputs_are_the_envs_at_that_step_and_numpy_probabilities_are_the_trainers():
    _replay_rollout(_jax(), "belief", rollouts=1, num_steps=40)


@pytest.mark.slow
def test_ground_truth_inputs_change_only_after_the_episode_ends():
    _replay_rollout(_jax(), "ground-truth", rollouts=2, num_steps=101)  # crosses the end of the first episode


def test_numpy_and_xla_float64_policies_agree_to_the_last_bits_and_greedy_ties_go_low():
    import jax
    import jax.numpy as jnp

    rl2 = _jax()
    cfg = dict(rl2.DEFAULTS, inputs="belief")
    params = {k: np.asarray(v) for k, v in rl2.init_params(jax.random.key(1), cfg).items()}
    rng = np.random.default_rng(0)
    env = gym.make("Alchemy/SymbolicEvaluation-v0")
    obs = np.stack([env.reset(options={"episode": i})[0] for i in range(6)]).astype(np.float64)
    args = (obs, obs[::-1], rng.integers(0, 40, 6), rng.integers(-3, 16, 6).astype(float), rng.integers(0, 20, 6),
            rng.integers(0, 10, 6), rng.random((6, 28)))  # fmt: skip
    h = rng.normal(size=(6, 128))
    x = net.network_inputs(*args, np, np.float64)
    logits, value = net.heads(params, net.core_step(params, x, h, np), obs, np)
    with jax.enable_x64(True):

        @jax.jit
        def policy(params, args, h, obs):
            x = net.network_inputs(*args, jnp, jnp.float64)
            return (x, *net.heads(params, net.core_step(params, x, h, jnp), obs, jnp))

        jx, jl, jv = policy({k: jnp.asarray(v, jnp.float64) for k, v in params.items()}, args, h, obs)
        np.testing.assert_allclose(np.asarray(jx), x, rtol=1e-15, atol=1e-15)
        np.testing.assert_allclose(np.asarray(jl), logits, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(jv), value, rtol=1e-12)
        tied = jnp.asarray([[0.0, 3.0, 3.0 - 1e-9, 3.0 + 1e-9, 2.0], [5.0, 1.0, 5.0, 5.0, net.MASKED]])
        assert np.asarray(net.greedy_action(tied, jnp)).tolist() == [1, 0]
    assert net.greedy_action(np.asarray(tied), np).tolist() == [1, 0]


# ------------------------------------------------------------------ training runs, checkpoints, evaluation


def test_smoke_run_resumes_exactly_and_exports_what_the_numpy_agent_plays(tmp_path, compile_cache):
    rl2 = _jax()
    total = ["--total-timesteps", str(3 * 4 * 20)]  # 3 updates
    whole = rl2.main([*TINY, *total, "--run-dir", str(tmp_path / "a")])
    assert whole["steps"] == 240 and whole["updates"] == 3 and len(whole["history"]) == 3
    rl2.main([*TINY, *total, "--run-dir", str(tmp_path / "b"), "--stop-at", "80"])
    rows = (tmp_path / "b" / "progress.csv").read_text().splitlines()
    assert rows[0].startswith("steps,hours,mean_episode_reward") and [r.split(",")[0] for r in rows[1:]] == ["80"]
    resumed = rl2.main(["--run-dir", str(tmp_path / "b"), "--resume", "--log-every", "1"])
    assert resumed["steps"] == 240 and resumed["config"] == whole["config"]
    for name in net.PARAM_NAMES:
        np.testing.assert_array_equal(np.asarray(resumed["state"]["params"][name]),
                                      np.asarray(whole["state"]["params"][name]), err_msg=name)  # fmt: skip
    rows = (tmp_path / "b" / "progress.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["80", "160", "240"]
    # export: the numpy agent plays the exported weights as the JAX evaluation does
    rl2.main(["--run-dir", str(tmp_path / "b"), "--export", str(tmp_path / "w.npz")])
    agent = net.RL2Agent(tmp_path / "w.npz")
    assert agent.inputs == "symbolic" and agent.meta["steps"] == 240
    greedy = rl2.play(agent.params, "symbolic", rl2.EVALUATION_ID, 3, greedy=True)
    np.testing.assert_array_equal(_play_numpy(agent, range(3)), greedy)


def test_warm_start_begins_a_belief_run_from_ground_truth_weights(tmp_path, capsys, compile_cache):
    """``--init-weights``: a new run starts from another run's weights (here a ground-truth run's for a belief
    run: the same shapes), with fresh Adam state and counters; mismatched shapes and resuming are refused."""
    rl2 = _jax()
    # a ground-truth agent's weights, as --export writes them (no training needed to have some)
    gt_cfg = rl2.config_of(rl2.parse([*TINY, "--inputs", "ground-truth"]))
    gt_params = rl2.init_params(rl2.jax.random.key(7), gt_cfg)
    net.save_weights(tmp_path / "gt.npz", gt_params, rl2.weights_meta(gt_cfg, {"steps": 80, "seconds": 0.0}))
    source, _ = net.load_weights(tmp_path / "gt.npz")
    cfg = rl2.config_of(rl2.parse([*TINY, "--inputs", "belief"]))
    init, _, _ = rl2.make_train(cfg)
    template = init(rl2.jax.random.key(3))
    state, meta = rl2.warm_start(tmp_path / "gt.npz", template, cfg)
    assert meta["inputs"] == "ground-truth" and meta["steps"] == 80
    for name in net.PARAM_NAMES:
        np.testing.assert_array_equal(np.asarray(state["params"][name]), source[name].astype(np.float32))
        assert not np.array_equal(np.asarray(template["params"][name]), np.asarray(state["params"][name])) or (
            not source[name].any()
        ), name  # the run's own initialisation is replaced (zero biases stay zero)
    assert rl2.jax.tree_util.tree_structure(state["opt"]) == rl2.jax.tree_util.tree_structure(template["opt"])
    out = rl2.main([*TINY, "--total-timesteps", "80", "--inputs", "belief", "--init-weights", str(tmp_path / "gt.npz"),
                    "--run-dir", str(tmp_path / "b")])  # fmt: skip
    assert out["steps"] == 80 and out["config"]["inputs"] == "belief"
    assert "warm start from" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "b" / "init.json").read_text())
    assert recorded["init_weights"] == str(tmp_path / "gt.npz") and recorded["inputs"] == "ground-truth"
    shapes = r"parameter 'enc_b' has shape \(8,\), this run's is \(16,\) \(inputs belief, hidden 16"
    with pytest.raises(SystemExit, match=shapes):
        rl2.main([*TINY, "--hidden", "16", "--inputs", "belief", "--init-weights", str(tmp_path / "gt.npz"),
                  "--run-dir", str(tmp_path / "c")])  # fmt: skip
    with pytest.raises(SystemExit, match=r"error: RL² weights file '.*nothing.npz' not found"):
        rl2.main([*TINY, "--init-weights", str(tmp_path / "nothing.npz"), "--run-dir", str(tmp_path / "d")])
    full = rl2.config_of(rl2.parse(["--inputs", "belief"]))  # the packaged agents' sizes
    blank = {"params": rl2.init_params(rl2.jax.random.key(0), full)}
    packaged, _ = rl2.warm_start("rl2-ground-truth", blank, full)
    np.testing.assert_array_equal(np.asarray(packaged["params"]["enc_w"]),
                                  net.RL2Agent("rl2-ground-truth").params["enc_w"].astype(np.float32))  # fmt: skip
    with pytest.raises(SystemExit):
        rl2.main(["--run-dir", str(tmp_path / "b"), "--resume", "--init-weights", str(tmp_path / "gt.npz")])
    assert "--init-weights starts a new run: it excludes --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_belief_run_continues_from_its_compact_checkpoint_and_evaluates(tmp_path, compile_cache):
    rl2 = _jax()
    first = rl2.main([*TINY, "--total-timesteps", "160", "--run-dir", str(tmp_path / "a"), "--inputs", "belief"])
    compact = tmp_path / "a" / "compact.npz"
    assert compact.stat().st_size < (tmp_path / "a" / "checkpoint.npz").stat().st_size
    # the compact checkpoint continues training (fresh envs) from the same parameters and Adam state
    more = rl2.main(["--resume-from", str(compact), "--run-dir", str(tmp_path / "c"), "--total-timesteps", "240",
                     "--eval", "--eval-episodes", "4", "--json", str(tmp_path / "e.json")])  # fmt: skip
    assert more["steps"] == 240 and more["config"] == dict(first["config"], total_timesteps=240)
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["inputs"] == "belief" and evaluated["greedy"]["episodes"] == 4
    assert len(evaluated["sampled"]["trial_means"]) == 10
    rl2.main(["--run-dir", str(tmp_path / "c"), "--export", str(tmp_path / "w.npz")])
    agent = net.RL2Agent(tmp_path / "w.npz")
    greedy = rl2.play(agent.params, "belief", rl2.EVALUATION_ID, 4, greedy=True)
    np.testing.assert_array_equal(_play_numpy(agent, range(4)), greedy)


@pytest.mark.slow
def test_sigterm_ends_training_with_a_checkpoint_that_resumes(tmp_path, compile_cache):
    """A session that ends its commands (SIGTERM, or Ctrl-C) loses no training: the trainer finishes the current
    update, writes its checkpoint and says how to continue."""
    import os
    import signal
    import time
    from pathlib import Path

    rl2 = _jax()
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "alchemy_gym.baselines.rl2", *TINY, "--total-timesteps", str(10**9),
         "--run-dir", str(run)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len((run / "progress.csv").read_text().splitlines()
                                                      if (run / "progress.csv").exists() else []) < 3:  # fmt: skip
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    steps = int(out.split("stopped by signal 15 at ")[1].split(" steps")[0].replace(",", ""))
    assert f"continue with --run-dir {run} --resume" in out
    meta = rl2.read_meta(run / "checkpoint.npz")
    assert meta["counters"]["steps"] == steps >= 2 * 80  # every finished update is in the checkpoint
    rows = (run / "progress.csv").read_text().splitlines()[1:]
    assert int(rows[-1].split(",")[0]) == steps
    resumed = rl2.main(["--run-dir", str(run), "--resume", "--stop-at", str(steps + 80)])
    assert resumed["steps"] == steps + 80 and not resumed["stopped"]


def test_bad_settings_and_checkpoints_are_refused_with_what_was_expected(tmp_path, capsys, compile_cache):
    rl2 = _jax()
    with pytest.raises(SystemExit):
        rl2.main(["--inputs", "pixels"])
    err = capsys.readouterr().err
    assert "--inputs: invalid choice: 'pixels'" in err and all(k in err for k in ("symbolic", "belief", "ground-truth"))
    run = tmp_path / "run"
    rl2.main([*TINY, "--total-timesteps", "80", "--run-dir", str(run)])
    with pytest.raises(SystemExit, match="exists: pass --resume"):
        rl2.main([*TINY, "--total-timesteps", "80", "--run-dir", str(run)])
    with pytest.raises(SystemExit, match=r"--inputs belief differs from the checkpoint's 'symbolic'"):
        rl2.main(["--run-dir", str(run), "--resume", "--inputs", "belief"])
    with pytest.raises(SystemExit, match=r"--hidden 16 differs from the checkpoint's 8"):
        rl2.main(["--resume-from", str(run / "compact.npz"), "--hidden", "16", "--run-dir", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="--num-envs 8 differs from the checkpoint's 4"):
        rl2.main(["--run-dir", str(run), "--resume", "--num-envs", "8"])
    with pytest.raises(SystemExit, match="error: no checkpoint"):
        rl2.main(["--run-dir", str(tmp_path / "empty"), "--resume"])
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(SystemExit, match="error: .* is not an RL² checkpoint"):
        rl2.main(["--resume-from", str(tmp_path / "other.npz")])
    with pytest.raises(SystemExit, match=r"error: RL² weights file '.*nothing.npz' not found: expected an .npz"):
        rl2.main(["--eval-only", "--weights", str(tmp_path / "nothing.npz")])
    with pytest.raises(SystemExit, match="error: .* not an RL² weights file"):
        rl2.main(["--eval-only", "--weights", str(tmp_path / "other.npz")])


# ------------------------------------------------------------------ the 1000 evaluation episodes


def test_evaluate_cli_plays_the_packaged_agents(capsys):
    from alchemy_gym import cli

    assert cli.main(["evaluate", "--agent", "rl2", "--episodes", "0:3", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["agent"] == "rl2" and len(out["episodes"]) == 3
    played = [e["trial_rewards"] for e in out["episodes"]]
    np.testing.assert_array_equal(played, _play_numpy(make_agent("rl2"), range(3)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(net.AGENTS))
def test_numpy_agent_equals_the_jax_evaluation_on_all_1000_episodes(name):
    rl2 = _jax()
    from alchemy_gym.evaluation import evaluate, resolve_level

    agent = make_agent(name)
    jax_rewards = rl2.play(agent.params, agent.inputs, rl2.EVALUATION_ID, 1000, greedy=True)
    results = evaluate(name, resolve_level("alchemy/evaluation_episodes"), range(1000))
    numpy_rewards = np.array([results[i] for i in range(1000)])
    differ = np.flatnonzero(np.abs(numpy_rewards - jax_rewards).sum(1))
    assert differ.size == 0, f"episodes {differ[:10].tolist()} differ"
