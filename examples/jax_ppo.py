"""PPO in JAX on symbolic Alchemy, PureJaxRL style: environment, rollout and update in one ``jax.jit``.

    python3 -m pip install "alchemy-gym[jax]"
    python3 examples/jax_ppo.py --total-timesteps 5000000

The whole training run (``num_updates`` rollouts of ``num_steps`` steps of ``num_envs`` envs, then
``update_epochs`` epochs of minibatch updates each) is one compiled function: ``jax.lax.scan`` over
updates, over steps and over minibatches, the env stepped with ``jax.vmap``. A small MLP
actor-critic (no memory: see ``rl2_ppo.py`` for a recurrent agent), Adam from optax.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import alchemy_gym.jax as aj


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="Alchemy/SymbolicStandard-v0")
    p.add_argument("--total-timesteps", type=int, default=5_000_000)
    p.add_argument("--num-envs", type=int, default=512)
    p.add_argument("--num-steps", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=8)
    p.add_argument("--clip", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--reward-scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def init_mlp(key, sizes, last_scale):
    """Orthogonally initialised dense layers: a list of ``(w, b)``."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        scale = last_scale if i == len(sizes) - 2 else np.sqrt(2.0)
        layers.append((jax.nn.initializers.orthogonal(scale)(k, (n_in, n_out)), jnp.zeros(n_out)))
    return layers


def mlp(layers, x):
    for w, b in layers[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = layers[-1]
    return x @ w + b


def make_train(args):
    env, params = aj.make(args.env_id)
    n_actions, obs_dim = env.num_actions, env.observation_space(params).shape[0]
    num_updates = args.total_timesteps // (args.num_envs * args.num_steps)
    batch = args.num_envs * args.num_steps
    minibatch = batch // args.minibatches
    optimizer = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(args.lr, eps=1e-5))
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def policy(net, obs):
        return mlp(net["actor"], obs), mlp(net["critic"], obs)[..., 0]

    def train(key):
        k_actor, k_critic, k_env, key = jax.random.split(key, 4)
        net = {
            "actor": init_mlp(k_actor, [obs_dim, args.hidden, args.hidden, n_actions], 0.01),
            "critic": init_mlp(k_critic, [obs_dim, args.hidden, args.hidden, 1], 1.0),
        }
        opt_state = optimizer.init(net)
        obs, state = reset(jax.random.split(k_env, args.num_envs), params)

        def update(carry, _):
            net, opt_state, obs, state, key = carry

            def env_step(carry, _):
                obs, state, key = carry
                key, k_act, k_step = jax.random.split(key, 3)
                logits, value = policy(net, obs)
                action = jax.random.categorical(k_act, logits)
                logp = jax.nn.log_softmax(logits)[jnp.arange(args.num_envs), action]
                next_obs, state, reward, done, info = step(
                    jax.random.split(k_step, args.num_envs), state, action, params
                )
                out = (obs, action, logp, value, reward * args.reward_scale, done, info["episode_return"])
                return (next_obs, state, key), out

            (obs, state, key), traj = jax.lax.scan(env_step, (obs, state, key), None, args.num_steps)
            t_obs, t_act, t_logp, t_val, t_rew, t_done, t_ret = traj
            _, last_value = policy(net, obs)

            def gae(carry, x):
                adv, next_value = carry
                reward, value, done = x
                delta = reward + args.gamma * next_value * (1.0 - done) - value
                adv = delta + args.gamma * args.gae_lambda * (1.0 - done) * adv
                return (adv, value), adv

            _, advantages = jax.lax.scan(
                gae, (jnp.zeros(args.num_envs), last_value), (t_rew, t_val, t_done.astype(jnp.float32)), reverse=True
            )
            returns = advantages + t_val
            flat = jax.tree_util.tree_map(
                lambda x: x.reshape((batch,) + x.shape[2:]), (t_obs, t_act, t_logp, advantages, returns)
            )

            def loss_fn(net, mb):
                obs_b, act_b, logp_b, adv_b, ret_b = mb
                logits, value = policy(net, obs_b)
                logp_all = jax.nn.log_softmax(logits)
                logp = logp_all[jnp.arange(obs_b.shape[0]), act_b]
                ratio = jnp.exp(logp - logp_b)
                adv_b = (adv_b - adv_b.mean()) / (adv_b.std() + 1e-8)
                pg = jnp.maximum(-adv_b * ratio, -adv_b * jnp.clip(ratio, 1 - args.clip, 1 + args.clip)).mean()
                v = 0.5 * ((value - ret_b) ** 2).mean()
                entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
                return pg + args.vf_coef * v - args.ent_coef * entropy

            def epoch(carry, key):
                net, opt_state = carry
                order = jax.random.permutation(key, batch)
                shuffled = jax.tree_util.tree_map(
                    lambda x: x[order].reshape((args.minibatches, minibatch) + x.shape[1:]), flat
                )

                def minibatch_update(carry, mb):
                    net, opt_state = carry
                    grads = jax.grad(loss_fn)(net, mb)
                    updates, opt_state = optimizer.update(grads, opt_state, net)
                    return (optax.apply_updates(net, updates), opt_state), None

                return jax.lax.scan(minibatch_update, (net, opt_state), shuffled)[0], None

            key, k_epochs = jax.random.split(key)
            (net, opt_state), _ = jax.lax.scan(epoch, (net, opt_state), jax.random.split(k_epochs, args.update_epochs))
            ended = t_done.sum()
            mean_return = jnp.where(ended > 0, (t_ret * t_done).sum() / jnp.maximum(ended, 1), jnp.nan)
            return (net, opt_state, obs, state, key), mean_return

        carry, mean_returns = jax.lax.scan(update, (net, opt_state, obs, state, key), None, num_updates)
        return carry[0], mean_returns

    return train, num_updates


def main(argv=None) -> dict:
    args = parse(argv)
    train, num_updates = make_train(args)
    train = jax.jit(train)
    start = time.perf_counter()
    compiled = train.lower(jax.random.key(args.seed)).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    net, mean_returns = compiled(jax.random.key(args.seed))
    mean_returns = np.asarray(jax.block_until_ready(mean_returns))
    seconds = time.perf_counter() - start
    steps = num_updates * args.num_envs * args.num_steps
    finished = mean_returns[~np.isnan(mean_returns)]
    first, last = (finished[:5].mean(), finished[-5:].mean()) if len(finished) else (np.nan, np.nan)
    print(
        f"{args.env_id}: {steps:,} steps in {seconds:.1f} s ({steps / seconds:,.0f} steps/s, "
        f"compile {compile_seconds:.1f} s); mean episode reward: first updates {first:.1f}, last updates {last:.1f}"
    )
    return {"steps": steps, "seconds": seconds, "compile_seconds": compile_seconds, "mean_returns": mean_returns}


if __name__ == "__main__":
    main()
