"""RL² on symbolic Alchemy in JAX, PureJaxRL style: env, rollout and PPO update in one ``jax.jit``.

    pip install "alchemy-gym[jax]"
    python -m alchemy_gym.baselines.rl2 --inputs belief --total-timesteps 400000000 --run-dir runs/rl2-belief
    python -m alchemy_gym.baselines.rl2 --run-dir runs/rl2-belief --resume                 # continue it
    python -m alchemy_gym.baselines.rl2 --run-dir runs/rl2-belief --eval-only              # 1000 evaluation episodes
    python -m alchemy_gym.baselines.rl2 --run-dir runs/rl2-belief --export rl2-belief.npz  # weights for RL2Agent

The agent (:mod:`alchemy_gym.agents.rl2`, where the network is defined once for training and playing)
is a GRU whose memory runs through all 10 trials of an episode; it sees the symbolic observation,
its previous action and reward and where it is in the episode, and with ``--inputs belief`` or
``--inputs ground-truth`` the JAX env's ``belief_state(state)`` or ``ground_truth(state)`` of that
step. Training is PPO over sequences: ``--num-envs`` envs (the JAX env under ``vmap``) play
``--num-steps`` steps, then ``--update-epochs`` epochs over minibatches of whole env sequences
(backpropagation through the rollout, the memory at its start kept). One update (rollout, returns,
epochs) is one compiled function.

A run lives in ``--run-dir``: ``checkpoint.npz`` (the whole training state: parameters, Adam state,
env and memory state, RNG key, counters; written atomically every ``--checkpoint-every`` seconds),
``compact.npz`` (parameters, Adam state and counters only: continue from it with ``--resume-from``
on any machine), ``snapshots/`` (the weights every ``--snapshot-every`` steps) and ``progress.csv``
(training episode reward against steps and hours). Learning rate and entropy coefficient decay
linearly to ``--lr-end`` and ``--ent-coef-end`` times their start at ``--total-timesteps``.

Evaluation plays the 1000 evaluation episodes at once in the JAX env, with sampled actions and with
the most likely action, in float64 (the numpy agent's precision, so that the two agree on every
episode); ``--eval-level`` plays fresh episodes of a training level instead (for choosing
checkpoints without touching the evaluation episodes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import alchemy_gym.jax as aj
from alchemy_gym.agents import rl2 as net
from alchemy_gym.levels import EVALUATION_PREFIX, EVALUATION_PRIOR, env_id
from alchemy_gym.usage import ArgumentParser

#: Training settings, their defaults (tuned on training episodes) and what they mean (``--name`` on the command line).
SETTINGS: dict[str, tuple[Any, str]] = {
    "inputs": ("symbolic", "what the agent sees besides the symbolic observation"),
    "env_id": (env_id(EVALUATION_PRIOR), "the training level (the evaluation episodes' distribution)"),
    "total_timesteps": (100_000_000, "train to this many env steps; the schedules end here"),
    "num_envs": (256, "envs stepped together"),
    "num_steps": (200, "rollout length (200: one whole episode per rollout)"),
    "hidden": (128, "GRU size (and the encoder's)"),
    "head": (64, "size of the policy's stone layer and of the value layer"),
    "lr": (1e-3, "Adam learning rate at the start"),
    "lr_end": (0.1, "learning rate at --total-timesteps, as a fraction of --lr"),
    "gamma": (0.99, "discount"),
    "gae_lambda": (0.95, "GAE lambda"),
    "update_epochs": (2, "epochs over each rollout"),
    "minibatches": (4, "minibatches (of whole env sequences) per epoch"),
    "clip": (0.2, "PPO clip range"),
    "ent_coef": (0.01, "entropy bonus at the start"),
    "ent_coef_end": (0.1, "entropy bonus at --total-timesteps, as a fraction of --ent-coef"),
    "vf_coef": (0.5, "value loss weight"),
    "max_grad_norm": (0.5, "gradient clipping (global norm)"),
    "reward_scale": (0.1, "rewards are multiplied by this for the returns"),
    "seed": (1, "seed of the parameters, envs and actions"),
}
DEFAULTS: dict[str, Any] = {name: default for name, (default, _) in SETTINGS.items()}
#: Settings a checkpoint fixes (the network and what it plays) and those its env state fixes.
ARCHITECTURE = ("inputs", "env_id", "hidden", "head")
ENV_SHAPE = ("num_envs", "num_steps")
EVALUATION_ID = env_id(EVALUATION_PREFIX)
FORMAT = 1


def parse(argv=None) -> argparse.Namespace:
    p = ArgumentParser(
        prog="python -m alchemy_gym.baselines.rl2",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--inputs", choices=tuple(net.INPUT_KINDS), default=None,
                   help="what the agent sees besides the symbolic observation: nothing, the belief state or the "
                   "ground truth (default symbolic)")  # fmt: skip
    for name, (default, meaning) in SETTINGS.items():
        if name != "inputs":
            flag = "--" + name.replace("_", "-")
            p.add_argument(flag, type=type(default), default=None, help=f"{meaning} (default {default})")
    p.add_argument("--run-dir", default=None, help="checkpoints, snapshots and progress.csv go here")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    p.add_argument("--resume-from", metavar="COMPACT.npz", help="continue training from a compact checkpoint")
    p.add_argument(
        "--init-weights",
        metavar="FILE.npz",
        help="start a new run from these weights, a file or a packaged agent (a warm start: any input kind whose "
        "parameter shapes match, e.g. rl2-ground-truth for a belief run); Adam state and step counts start afresh",
    )
    p.add_argument("--stop-at", type=int, metavar="STEPS", help="stop (with a checkpoint) after this many steps, "
                   "schedules still running to --total-timesteps")  # fmt: skip
    p.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds between checkpoints (300)")
    p.add_argument("--snapshot-every", type=int, default=25_000_000, help="steps between weight snapshots")
    p.add_argument("--log-every", type=int, default=5, help="updates between progress rows (5)")
    p.add_argument("--eval", action="store_true", help="evaluate at the end of training")
    p.add_argument("--eval-only", action="store_true", help="evaluate the run's checkpoint (or --weights)")
    p.add_argument("--weights", metavar="FILE.npz", help="with --eval-only: evaluate this weights file (or a "
                   f"packaged agent: {', '.join(net.AGENTS)})")  # fmt: skip
    p.add_argument("--eval-level", default=EVALUATION_ID,
                   help="the evaluation episodes (default) or a training level (fresh episodes)")  # fmt: skip
    p.add_argument("--eval-episodes", type=int, default=1000, help="episodes to evaluate (1000)")
    p.add_argument("--eval-seed", type=int, default=12345, help="seed of sampled actions and episodes")
    p.add_argument("--json", metavar="FILE", help="write the evaluation as JSON here")
    p.add_argument("--export", metavar="FILE.npz", help="write the run's weights (for RL2Agent) and exit")
    args = p.parse_args(argv)
    if args.resume and args.resume_from:
        p.error("--resume and --resume-from exclude each other")
    if args.init_weights and (args.resume or args.resume_from or args.eval_only or args.export):
        p.error("--init-weights starts a new run: it excludes --resume, --resume-from, --eval-only and --export")
    if (args.resume or args.export or (args.eval_only and not args.weights)) and not args.run_dir:
        p.error("--resume, --export and --eval-only need --run-dir (or --eval-only --weights FILE)")
    return args


def config_of(args: argparse.Namespace, saved: dict | None = None) -> dict[str, Any]:
    """The run's settings: the defaults, then a checkpoint's, then those given on the command line. A setting a
    checkpoint fixes cannot change."""
    cfg = dict(DEFAULTS)
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    if saved is not None:
        fixed = ARCHITECTURE + (ENV_SHAPE if saved.get("_full") else ())
        for key in fixed:
            if key in given and given[key] != saved[key]:
                raise ValueError(
                    f"--{key.replace('_', '-')} {given[key]} differs from the checkpoint's {saved[key]!r}: "
                    f"a checkpoint fixes {', '.join(fixed)}"
                )
        cfg.update({k: v for k, v in saved.items() if k in DEFAULTS})
    cfg.update(given)
    net.check_inputs(cfg["inputs"])
    if cfg["num_envs"] % cfg["minibatches"]:
        raise ValueError(f"--num-envs {cfg['num_envs']} is not a multiple of --minibatches {cfg['minibatches']}")
    return cfg


# ------------------------------------------------------------------ environment and network


def make_env(env_id: str, inputs: str):
    """``(env, env_params, chemistry)``: the JAX env and the batched function giving the chemistry input
    of a state (``None`` for symbolic inputs)."""
    env, params = aj.make(env_id, belief_state=inputs == "belief")
    if env.observation_space(params).shape != (net.OBS_SIZE,) or env.num_actions != net.NUM_ACTIONS:
        raise ValueError(
            f"{env_id}: RL² plays levels with {net.OBS_SIZE}-float observations and {net.NUM_ACTIONS} actions"
        )
    if inputs == "belief":
        chemistry = jax.vmap(lambda s: env.belief_state(s, params))
    elif inputs == "ground-truth":
        chemistry = jax.vmap(env.ground_truth)
    else:
        chemistry = None
    return env, params, chemistry


def init_params(key: jax.Array, cfg: dict) -> dict[str, jax.Array]:
    """Orthogonal weights (small for the policy's last layer), zero biases."""
    shapes = net.param_shapes(cfg["inputs"], cfg["hidden"], cfg["head"])
    scales = {"enc_w": 2**0.5, "pol_h": 2**0.5, "pol_stone": 2**0.5, "pol_out": 0.01, "noop_w": 0.01,
              "val_w1": 2**0.5, "val_w2": 1.0}  # fmt: skip
    keys = dict(zip(net.PARAM_NAMES, jax.random.split(key, len(net.PARAM_NAMES))))
    params = {}
    h = cfg["hidden"]
    for name, shape in shapes.items():
        if name in ("gru_wi", "gru_wh"):  # each gate's block orthogonal
            blocks = [jax.nn.initializers.orthogonal()(k, (shape[0], h)) for k in jax.random.split(keys[name], 3)]
            params[name] = jnp.concatenate(blocks, axis=1)
        elif name in scales and len(shape) == 2:
            params[name] = jax.nn.initializers.orthogonal(scales[name])(keys[name], shape)
        elif name in scales:  # vectors: a row of an orthogonal matrix
            params[name] = jax.nn.initializers.orthogonal(scales[name])(keys[name], (1, shape[0]))[0]
        else:
            params[name] = jnp.zeros(shape)
    return params


def optimizer(cfg: dict) -> optax.GradientTransformation:
    """Adam without a learning rate (the update scales by the scheduled rate), gradients clipped."""
    return optax.chain(optax.clip_by_global_norm(cfg["max_grad_norm"]), optax.scale_by_adam(eps=1e-5))


# ------------------------------------------------------------------ training


def make_train(cfg: dict):
    """``(init, update, rollout)``: ``init(key)`` the training state; ``update(state, lr, ent_coef)`` one rollout
    and PPO update (compiled), returning the new state and metrics; ``rollout(params, state, key)`` the rollout
    alone (``(state, trajectory)``, for tests)."""
    env, env_params, chemistry = make_env(cfg["env_id"], cfg["inputs"])
    n, t_len, mbs = cfg["num_envs"], cfg["num_steps"], cfg["minibatches"]
    step_env = jax.vmap(env.step, in_axes=(None, 0, 0, None))
    tx = optimizer(cfg)
    f32 = jnp.float32

    def init(key):
        k_params, k_env, key = jax.random.split(key, 3)
        params = init_params(k_params, cfg)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_env, n), env_params)
        return {
            "params": params,
            "opt": tx.init(params),
            "env": env_state,
            "obs": obs,
            "prev_obs": obs,
            "prev_action": jnp.zeros(n, jnp.int32),
            "prev_reward": jnp.zeros(n, f32),
            "h": jnp.zeros((n, cfg["hidden"]), f32),
            "key": key,
        }

    def inputs_of(s):
        chem = chemistry(s["env"]) if chemistry is not None else None
        e = s["env"]
        return net.network_inputs(s["obs"], s["prev_obs"], s["prev_action"], s["prev_reward"], e.steps, e.trial,
                                  chem, jnp, f32)  # fmt: skip

    def env_step(params, s, key):
        """One step of every env: the inputs of this step (chemistry of this state: no look-ahead), an action
        sampled, the env stepped; memory and previous-action inputs start afresh where an episode ends."""
        x = inputs_of(s)
        h = net.core_step(params, x, s["h"], jnp)
        logits, value = net.heads(params, h, s["obs"], jnp)
        k_act, k_env = jax.random.split(key)
        action = jax.random.categorical(k_act, logits).astype(jnp.int32)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
        obs, env_state, reward, done, info = step_env(k_env, s["env"], action, env_params)
        fresh = done[:, None]
        new = dict(s, env=env_state, obs=obs, prev_obs=jnp.where(fresh, obs, s["obs"]),
                   prev_action=jnp.where(done, 0, action), prev_reward=jnp.where(done, 0.0, reward),
                   h=jnp.where(fresh, 0.0, h))  # fmt: skip
        out = {"x": x, "obs": s["obs"], "action": action, "logp": logp, "value": value, "reward": reward,
               "done": done, "return": info["episode_return"]}  # fmt: skip
        return new, out

    def loss_fn(params, mb, ent_coef):
        gi = net.gru_input(params, mb["x"], jnp)  # (T, B, 3H): the input side of every step at once

        def recur(h, step):
            gi_t, done = step
            h = net.gru_recur(params, gi_t, h, jnp)
            return jnp.where(done[:, None], 0.0, h), h

        _, hs = jax.lax.scan(recur, mb["h0"], (gi, mb["done"]))
        logits, value = net.heads(params, hs, mb["obs"], jnp)
        logp_all = jax.nn.log_softmax(logits)
        taken = jax.nn.one_hot(mb["action"], net.NUM_ACTIONS, dtype=f32)  # a product, not a gather: no scatter
        logp = (logp_all * taken).sum(-1)
        ratio = jnp.exp(logp - mb["logp"])
        adv = (mb["adv"] - mb["adv"].mean()) / (mb["adv"].std() + 1e-8)
        clip = cfg["clip"]
        pg = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - clip, 1 + clip)).mean()
        v_loss = 0.5 * ((value - mb["ret"]) ** 2).mean()
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
        loss = pg + cfg["vf_coef"] * v_loss - ent_coef * entropy
        stats = {"entropy": entropy, "value_loss": v_loss, "approx_kl": ((ratio - 1) - jnp.log(ratio)).mean(),
                 "clipfrac": (jnp.abs(ratio - 1) > clip).mean()}  # fmt: skip
        return loss, stats

    def rollout(params, s, key):
        roll = {k: s[k] for k in ("env", "obs", "prev_obs", "prev_action", "prev_reward", "h")}
        return jax.lax.scan(lambda c, k: env_step(params, c, k), roll, jax.random.split(key, t_len))

    def update(s, lr, ent_coef):
        params, h0 = s["params"], s["h"]
        key, k_roll, k_perm = jax.random.split(s["key"], 3)
        roll, traj = rollout(params, s, k_roll)
        _, last_value = net.heads(params, net.core_step(params, inputs_of(roll), roll["h"], jnp), roll["obs"], jnp)

        def gae(carry, step):
            adv, next_value = carry
            reward, value, done = step
            live = 1.0 - done
            delta = reward * cfg["reward_scale"] + cfg["gamma"] * next_value * live - value
            adv = delta + cfg["gamma"] * cfg["gae_lambda"] * live * adv
            return (adv, value), adv

        done_f = traj["done"].astype(f32)
        _, adv = jax.lax.scan(gae, (jnp.zeros(n), last_value), (traj["reward"], traj["value"], done_f), reverse=True)
        data = {"x": traj["x"], "obs": traj["obs"], "action": traj["action"], "logp": traj["logp"],
                "adv": adv, "ret": adv + traj["value"], "done": traj["done"]}  # fmt: skip

        def epoch(carry, key):
            params, opt = carry
            order = jax.random.permutation(key, n).reshape(mbs, n // mbs)
            batches = jax.tree_util.tree_map(lambda x: jnp.swapaxes(x[:, order], 0, 1), data)  # (M, T, B, ...)
            batches["h0"] = h0[order]

            def minibatch(carry, mb):
                params, opt = carry
                grads, stats = jax.grad(loss_fn, has_aux=True)(params, mb, ent_coef)
                updates, opt = tx.update(grads, opt, params)
                params = jax.tree_util.tree_map(lambda p, u: p - lr * u, params, updates)
                return (params, opt), stats

            return jax.lax.scan(minibatch, (params, opt), batches)

        (params, opt), stats = jax.lax.scan(epoch, (params, s["opt"]), jax.random.split(k_perm, cfg["update_epochs"]))
        ended = traj["done"].sum()
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics["episodes"] = ended
        metrics["return_sum"] = jnp.where(traj["done"], traj["return"], 0.0).sum()
        return dict(s, **roll, params=params, opt=opt, key=key), metrics

    return init, jax.jit(update, donate_argnums=0), jax.jit(rollout)


# ------------------------------------------------------------------ evaluation


def play(params: dict, inputs: str, env_id: str, episodes: int, greedy: bool, seed: int = 0) -> np.ndarray:
    """Trial rewards (episodes, 10) of the policy, all episodes at once in the JAX env, in float64: the
    evaluation episodes 0..episodes-1, or fresh episodes of a training level (drawn from ``seed``); actions
    the most likely (``greedy``) or sampled."""
    with jax.enable_x64(True):
        env, env_params, chemistry = make_env(env_id, inputs)
        p64 = {k: jnp.asarray(np.asarray(v), jnp.float64) for k, v in params.items()}
        keys = jax.random.split(jax.random.key(seed), episodes + 1)
        if env_params.fixed:
            reset = jax.vmap(env.reset, in_axes=(0, None, 0))
            obs, state = reset(keys[1:], env_params, jnp.arange(episodes, dtype=jnp.int32))
        else:
            obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys[1:], env_params)
        step_env = jax.vmap(env.step, in_axes=(None, 0, 0, None))

        def body(carry, key):
            state, obs, prev_obs, prev_action, prev_reward, h = carry
            chem = chemistry(state) if chemistry is not None else None
            x = net.network_inputs(obs, prev_obs, prev_action, prev_reward, state.steps, state.trial, chem, jnp,
                                   jnp.float64)  # fmt: skip
            h = net.core_step(p64, x, h, jnp)
            logits, _ = net.heads(p64, h, obs, jnp)
            k_act, k_env = jax.random.split(key)
            if greedy:
                action = net.greedy_action(logits, jnp).astype(jnp.int32)
            else:
                action = jax.random.categorical(k_act, logits).astype(jnp.int32)
            trial = state.trial
            new_obs, state, reward, _, _ = step_env(k_env, state, action, env_params)
            return (state, new_obs, obs, action, reward, h), (trial, reward)

        steps = net.TRIALS * net.TRIAL_STEPS
        carry = (state, obs, obs, jnp.zeros(episodes, jnp.int32), jnp.zeros(episodes, jnp.float32),
                 jnp.zeros((episodes, p64["gru_wh"].shape[0]), jnp.float64))  # fmt: skip
        run = jax.jit(lambda c, k: jax.lax.scan(body, c, k)[1])
        trials, rewards = run(carry, jax.random.split(keys[0], steps))
        trials, rewards = np.asarray(trials), np.asarray(rewards, np.float64)
    out = np.zeros((episodes, net.TRIALS))
    for t in range(net.TRIALS):
        out[:, t] = np.where(trials == t, rewards, 0.0).sum(0)
    return out


def summary(trial_rewards: np.ndarray) -> dict[str, Any]:
    """Mean ± standard error of the episode reward, and the per-trial means."""
    totals = trial_rewards.sum(1)
    return {
        "mean": float(totals.mean()),
        "se": float(totals.std(ddof=1) / np.sqrt(len(totals))),
        "trial_means": [round(float(m), 4) for m in trial_rewards.mean(0)],
        "episodes": len(totals),
    }


def evaluate(params: dict, inputs: str, args: argparse.Namespace) -> dict[str, Any]:
    """Sampled and greedy play on ``--eval-level``: summaries, printed."""
    out: dict[str, Any] = {"level": args.eval_level, "inputs": inputs}
    for how in ("sampled", "greedy"):
        rewards = play(params, inputs, args.eval_level, args.eval_episodes, how == "greedy", args.eval_seed)
        out[how] = summary(rewards)
        s = out[how]
        print(f"{args.eval_level} ({s['episodes']} episodes), {how} actions: {s['mean']:.2f} ± {s['se']:.2f}; "
              f"per trial {' '.join(f'{m:.1f}' for m in s['trial_means'])}", flush=True)  # fmt: skip
    return out


# ------------------------------------------------------------------ checkpoints


def _leaves(tree) -> list[np.ndarray]:
    leaves = jax.tree_util.tree_leaves(tree)
    return [np.asarray(jax.random.key_data(x)) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x)
            for x in leaves]  # fmt: skip


def _restore(template, arrays: list[np.ndarray], what: str):
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(arrays) != len(leaves):
        raise ValueError(f"{what} holds {len(arrays)} arrays, expected {len(leaves)} for these settings")
    out = []
    for i, (want, got) in enumerate(zip(leaves, arrays)):
        if jnp.issubdtype(want.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(jnp.asarray(got)))
            continue
        if got.shape != want.shape or got.dtype != want.dtype:
            have, expected = f"{got.dtype}{list(got.shape)}", f"{want.dtype}{list(want.shape)}"
            raise ValueError(f"{what}: array {i} is {have}, expected {expected} for these settings")
        out.append(jnp.asarray(got))
    return jax.tree_util.tree_unflatten(treedef, out)


def _write_npz(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def read_meta(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {str(path)!r}")
    with np.load(path, allow_pickle=False) as data:
        if "meta" not in data.files:
            raise ValueError(f"{str(path)!r} is not an RL² checkpoint (no 'meta' entry)")
        meta = json.loads(str(data["meta"]))
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{str(path)!r} is not an RL² checkpoint of format {FORMAT}")
    return meta


def save(run: Path, state: dict, cfg: dict, counters: dict) -> None:
    """The full checkpoint (``checkpoint.npz``) and the compact one (``compact.npz``), each written atomically."""
    meta = {"format": FORMAT, "config": cfg, "counters": counters}
    full = {f"s{i:03d}": a for i, a in enumerate(_leaves(state))}
    _write_npz(run / "checkpoint.npz", meta | {"kind": "full"}, full)
    compact = {f"p{i:03d}": a for i, a in enumerate(_leaves({"params": state["params"], "opt": state["opt"]}))}
    _write_npz(run / "compact.npz", meta | {"kind": "compact"}, compact)


def load(path: Path, template: dict, cfg: dict) -> tuple[dict, dict]:
    """``(state, counters)`` from a checkpoint: a full one replaces the whole template state, a compact one its
    parameters and Adam state (the envs start afresh)."""
    meta = read_meta(path)
    saved = meta["config"]
    for key in ARCHITECTURE + (ENV_SHAPE if meta["kind"] == "full" else ()):
        if saved[key] != cfg[key]:
            raise ValueError(f"{str(path)!r} is a checkpoint of {key}={saved[key]!r}, expected {cfg[key]!r}")
    with np.load(path, allow_pickle=False) as data:
        prefix = "s" if meta["kind"] == "full" else "p"
        arrays = [data[k] for k in sorted(data.files) if k.startswith(prefix)]
    if meta["kind"] == "full":
        return _restore(template, arrays, str(path)), meta["counters"]
    part = _restore({"params": template["params"], "opt": template["opt"]}, arrays, str(path))
    return dict(template, **part), meta["counters"]


def warm_start(path: str | os.PathLike, state: dict, cfg: dict) -> tuple[dict, dict]:
    """``(state, meta)``: the training state with the parameters of a weights file (of any input kind whose shapes
    equal this run's); Adam state, envs and memory stay fresh."""
    params, meta = net.load_weights(net.weights_file(path))
    want = jax.tree_util.tree_map(lambda x: x.shape, state["params"])
    for name, shape in want.items():
        if params[name].shape != shape:
            raise ValueError(
                f"{str(path)!r}: parameter {name!r} has shape {params[name].shape}, this run's is {shape} "
                f"(inputs {cfg['inputs']}, hidden {cfg['hidden']}, head {cfg['head']})"
            )
    new = {name: jnp.asarray(params[name], dtype=state["params"][name].dtype) for name in want}
    return dict(state, params=new), meta


def weights_meta(cfg: dict, counters: dict) -> dict:
    return {"inputs": cfg["inputs"], "hidden": cfg["hidden"], "head": cfg["head"], "env_id": cfg["env_id"],
            "steps": counters["steps"], "hours": round(counters["seconds"] / 3600, 3)}  # fmt: skip


# ------------------------------------------------------------------ main


def _progress_writer(run: Path, steps: int):
    """The run's progress.csv, opened for appending; rows past ``steps`` (written after the last checkpoint)
    are dropped."""
    path = run / "progress.csv"
    header = ["steps", "hours", "mean_episode_reward", "episodes", "lr", "ent_coef", "entropy", "value_loss",
              "approx_kl", "clipfrac", "steps_per_s"]  # fmt: skip
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if int(r[0]) <= steps]
    f = open(path, "w", newline="")  # noqa: SIM115 (kept open for the run)
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
    f.flush()
    return f, writer


def main(argv=None) -> dict[str, Any]:
    args = parse(argv)
    run = Path(args.run_dir) if args.run_dir else None
    checkpoint = run / "checkpoint.npz" if run else None

    if args.eval_only and args.weights:
        try:
            params, meta = net.load_weights(net.weights_file(args.weights))
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        result = evaluate(params, meta["inputs"], args)
        return _write_json(args, result)

    source = None
    if args.resume or args.export or args.eval_only:
        source = checkpoint
    elif args.resume_from:
        source = Path(args.resume_from)
    elif checkpoint is not None and checkpoint.exists():
        raise SystemExit(f"{checkpoint} exists: pass --resume to continue that run, or choose another --run-dir")
    saved = None
    if source is not None:
        try:
            meta = read_meta(source)
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        saved = dict(meta["config"], _full=meta["kind"] == "full")
    try:
        cfg = config_of(args, saved)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None

    init, update, _ = make_train(cfg)
    state = jax.jit(init)(jax.random.key(cfg["seed"]))
    counters = {"steps": 0, "updates": 0, "seconds": 0.0}
    if source is not None:
        try:
            state, counters = load(source, state, cfg)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if meta["kind"] == "compact":  # fresh envs, drawn from a key that depends on the progress so far
            fresh = jax.jit(init)(jax.random.key(cfg["seed"] * 1_000_003 + counters["updates"]))
            state = dict(fresh, params=state["params"], opt=state["opt"])
        print(f"loaded {source} ({meta['kind']}): {counters['steps']:,} steps, {counters['seconds'] / 3600:.2f} h",
              flush=True)  # fmt: skip
    elif args.init_weights:
        try:
            state, init_meta = warm_start(args.init_weights, state, cfg)
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        if run:
            run.mkdir(parents=True, exist_ok=True)
            (run / "init.json").write_text(json.dumps({"init_weights": str(args.init_weights), **init_meta}, indent=1))
        source_steps = init_meta.get("steps", 0)
        print(f"warm start from {args.init_weights} ({init_meta['inputs']} inputs, {source_steps:,} steps)", flush=True)

    if args.export:
        net.save_weights(args.export, state["params"], weights_meta(cfg, counters))
        print(f"wrote {args.export} ({os.path.getsize(args.export):,} bytes)")
        return {"export": args.export, **counters}
    if args.eval_only:
        return _write_json(args, evaluate(state["params"], cfg["inputs"], args) | {"steps": counters["steps"]})

    if run:
        (run / "snapshots").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(cfg, indent=1))
        progress, writer = _progress_writer(run, counters["steps"])
    per_update = cfg["num_envs"] * cfg["num_steps"]
    total = cfg["total_timesteps"]
    began = time.time() - counters["seconds"]
    last_checkpoint, window = time.time(), {"return_sum": 0.0, "episodes": 0, "steps": 0, "t": time.time()}
    history = []
    print(f"training {cfg['inputs']} on {cfg['env_id']}: {cfg['num_envs']} envs x {cfg['num_steps']} steps per update, "
          f"to {total:,} steps", flush=True)  # fmt: skip
    stop = min(total, args.stop_at) if args.stop_at else total
    with _stop_on_signals() as stopping:
        while counters["steps"] < stop and not stopping:
            frac = min(counters["steps"] / total, 1.0)
            lr = cfg["lr"] * (1.0 - frac * (1.0 - cfg["lr_end"]))
            ent = cfg["ent_coef"] * (1.0 - frac * (1.0 - cfg["ent_coef_end"]))
            state, metrics = update(state, jnp.float32(lr), jnp.float32(ent))
            metrics = jax.device_get(metrics)
            counters["steps"] += per_update
            counters["updates"] += 1
            counters["seconds"] = time.time() - began
            window["return_sum"] += float(metrics["return_sum"])
            window["episodes"] += int(metrics["episodes"])
            window["steps"] += per_update
            if counters["updates"] % args.log_every == 0 or counters["steps"] >= stop:
                now = time.time()
                mean = window["return_sum"] / window["episodes"] if window["episodes"] else float("nan")
                speed = window["steps"] / (now - window["t"])
                row = [counters["steps"], round(counters["seconds"] / 3600, 4), round(mean, 3), window["episodes"],
                       f"{lr:.3g}", f"{ent:.3g}"] + [f"{float(metrics[k]):.4g}" for k in
                       ("entropy", "value_loss", "approx_kl", "clipfrac")] + [round(speed)]  # fmt: skip
                history.append(row)
                print(f"{counters['steps']:>13,} steps {counters['seconds'] / 3600:6.2f} h  reward {mean:7.2f} "
                      f"({window['episodes']} episodes)  entropy {float(metrics['entropy']):.3f}  "
                      f"kl {float(metrics['approx_kl']):.4f}  {speed:,.0f} steps/s", flush=True)  # fmt: skip
                if run:
                    writer.writerow(row)
                    progress.flush()
                window = {"return_sum": 0.0, "episodes": 0, "steps": 0, "t": now}
            if run:
                snap = args.snapshot_every
                if snap and counters["steps"] // snap > (counters["steps"] - per_update) // snap:
                    name = run / "snapshots" / f"weights-{counters['steps'] // 1_000_000:05d}M.npz"
                    net.save_weights(name, state["params"], weights_meta(cfg, counters))
                if time.time() - last_checkpoint > args.checkpoint_every or counters["steps"] >= stop:
                    save(run, state, cfg, counters)
                    last_checkpoint = time.time()
    if run:
        progress.close()
        if stopping:  # the last checkpoint is now
            save(run, state, cfg, counters)
    if stopping:
        where = f"; continue with --run-dir {run} --resume" if run else ""
        print(f"stopped by signal {stopping[0]} at {counters['steps']:,} steps{where}", flush=True)
    out: dict[str, Any] = dict(counters, history=history, state=state, config=cfg, stopped=bool(stopping))
    if args.eval and not stopping:
        out["evaluation"] = evaluate(state["params"], cfg["inputs"], args)
        _write_json(args, out["evaluation"])
    return out


@contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM only append their number to the list given (training then ends after the
    current update, with a checkpoint); the previous handlers come back on leaving. Only in the main thread
    (where Python runs signal handlers); elsewhere the list stays empty."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.signal(s, lambda n, _frame: received.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _write_json(args, result: dict) -> dict:
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
