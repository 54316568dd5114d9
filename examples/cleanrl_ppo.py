"""A CleanRL-style single-file PPO (recurrent-free, MLP) on symbolic Alchemy.

    python3 -m pip install torch==2.13.0
    python3 examples/cleanrl_ppo.py --total-timesteps 200000

Uses ``gym.make_vec`` as CleanRL's scripts do, with the package's native vector env
(``vectorization_mode="vector_entry_point"``: all sub-envs in one call, the same episodes as
``"sync"``).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import alchemy_gym  # noqa: F401


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env-id", default="Alchemy/SymbolicStandard-v0")
    p.add_argument("--total-timesteps", type=int, default=200_000)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=4)
    p.add_argument("--clip", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None) -> list[float]:
    import torch
    from torch import nn

    args = parse(argv)
    torch.manual_seed(args.seed)
    envs = gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode="vector_entry_point")
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    obs_dim, n_actions = envs.single_observation_space.shape[0], envs.single_action_space.n

    def layer(i, o, std=2**0.5):
        lin = nn.Linear(i, o)
        nn.init.orthogonal_(lin.weight, std)
        nn.init.zeros_(lin.bias)
        return lin

    actor = nn.Sequential(layer(obs_dim, 128), nn.Tanh(), layer(128, 128), nn.Tanh(), layer(128, n_actions, 0.01))
    critic = nn.Sequential(layer(obs_dim, 128), nn.Tanh(), layer(128, 128), nn.Tanh(), layer(128, 1, 1.0))
    optimizer = torch.optim.Adam(list(actor.parameters()) + list(critic.parameters()), lr=args.lr, eps=1e-5)

    T, N = args.num_steps, args.num_envs
    obs_buf = torch.zeros((T, N, obs_dim))
    act_buf = torch.zeros((T, N), dtype=torch.long)
    logp_buf, rew_buf, done_buf, val_buf = (torch.zeros((T, N)) for _ in range(4))
    next_obs = torch.tensor(envs.reset(seed=args.seed)[0])
    next_done = torch.zeros(N)
    returns_seen: list[float] = []
    for _update in range(args.total_timesteps // (T * N)):
        for t in range(T):
            obs_buf[t], done_buf[t] = next_obs, next_done
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=actor(next_obs))
                action = dist.sample()
                logp_buf[t], val_buf[t] = dist.log_prob(action), critic(next_obs).squeeze(-1)
            act_buf[t] = action
            o, r, term, trunc, info = envs.step(action.numpy())
            rew_buf[t] = torch.tensor(r, dtype=torch.float32)
            next_obs, next_done = torch.tensor(o), torch.tensor(np.logical_or(term, trunc), dtype=torch.float32)
            if "episode" in info:
                returns_seen += [float(x) for x in info["episode"]["r"][info["_episode"]]]
        with torch.no_grad():
            next_value = critic(next_obs).squeeze(-1)
            adv = torch.zeros_like(rew_buf)
            last = 0
            for t in reversed(range(T)):
                nonterminal = 1.0 - (next_done if t == T - 1 else done_buf[t + 1])
                value_next = next_value if t == T - 1 else val_buf[t + 1]
                delta = rew_buf[t] + args.gamma * value_next * nonterminal - val_buf[t]
                adv[t] = last = delta + args.gamma * args.gae_lambda * nonterminal * last
            ret = adv + val_buf
        b_obs, b_act, b_logp = obs_buf.reshape(-1, obs_dim), act_buf.reshape(-1), logp_buf.reshape(-1)
        b_adv, b_ret = adv.reshape(-1), ret.reshape(-1)
        batch = T * N
        for _epoch in range(args.update_epochs):
            for mb in np.array_split(np.random.permutation(batch), args.minibatches):
                dist = torch.distributions.Categorical(logits=actor(b_obs[mb]))
                ratio = (dist.log_prob(b_act[mb]) - b_logp[mb]).exp()
                a = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
                v = 0.5 * ((critic(b_obs[mb]).squeeze(-1) - b_ret[mb]) ** 2).mean()
                loss = pg + 0.5 * v - args.ent_coef * dist.entropy().mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(list(actor.parameters()) + list(critic.parameters()), 0.5)
                optimizer.step()
        if returns_seen:
            print(f"update {_update}: mean return of last 20 episodes {np.mean(returns_seen[-20:]):.1f}")
    envs.close()
    return returns_seen


if __name__ == "__main__":
    main()
