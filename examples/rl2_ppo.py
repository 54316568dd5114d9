"""RL^2 on symbolic Alchemy: a single-file, CleanRL-style recurrent PPO on the native vector env.

    python3 -m pip install torch==2.13.0
    python3 examples/rl2_ppo.py --total-timesteps 200000000 --run-dir runs/rl2

The agent is a GRU whose memory runs through all 10 trials of an episode (it is reset only
when an episode starts): what it learns about the chemistry in one trial it can use in the next.
Each step it sees the symbolic observation, its previous action (one-hot) and reward, and
where it is in the episode (step within the trial, trial number: the task's fixed structure,
which it could count itself). Everything else is plain PPO over sequences (truncated
backpropagation through the rollout, the GRU state at the rollout start kept).

The run is checkpointed (``--run-dir``: ``checkpoint.pt``, ``progress.csv`` with the mean
training episode reward against environment steps and wall time) and resumes from its
checkpoint. ``--eval`` plays the 1000 evaluation episodes with the trained policy.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

import alchemy_gym  # noqa: F401  (registers the IDs)

TRIAL_STEPS, TRIALS = 20, 10


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="Alchemy/SymbolicStandard-v0")
    p.add_argument("--total-timesteps", type=int, default=50_000_000)
    p.add_argument("--num-envs", type=int, default=512)
    p.add_argument("--num-steps", type=int, default=100, help="rollout length (BPTT window)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument(
        "--anneal-lr", action="store_true", help="decay the learning rate linearly to 0 at --total-timesteps"
    )
    p.add_argument("--gamma", type=float, default=0.995)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=4)
    p.add_argument("--clip", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--reward-scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--run-dir", default=None, help="checkpoint and progress here (resumes if present)")
    p.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds between checkpoints")
    p.add_argument("--eval", action="store_true", help="play the 1000 evaluation episodes at the end")
    p.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoint in --run-dir")
    p.add_argument(
        "--greedy", action="store_true", help="evaluate with the most likely action (default: sampled actions)"
    )
    return p.parse_args(argv)


def build(obs_dim: int, n_actions: int, hidden: int):
    import torch
    from torch import nn

    class Agent(nn.Module):
        """Inputs → MLP → GRU (the episode's memory) → policy and value heads."""

        def __init__(self) -> None:
            super().__init__()
            self.n_actions = n_actions
            inputs = obs_dim + n_actions + 1 + 2
            self.encoder = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU())
            self.gru = nn.GRU(hidden, hidden)
            self.policy = nn.Linear(hidden, n_actions)
            self.value = nn.Linear(hidden, 1)
            for name, param in self.gru.named_parameters():
                if "weight" in name:
                    nn.init.orthogonal_(param)
                else:
                    nn.init.zeros_(param)
            nn.init.orthogonal_(self.policy.weight, 0.01)
            nn.init.zeros_(self.policy.bias)

        def features(self, obs, prev_action, prev_reward, clock):
            one_hot = torch.nn.functional.one_hot(prev_action, self.n_actions).float()
            return self.encoder(torch.cat([obs, one_hot, prev_reward.unsqueeze(-1), clock], dim=-1))

        def step(self, x, h, start):
            """One step for all envs: ``start`` (N,) zeroes the memory of envs beginning an episode."""
            h = h * (1.0 - start).view(1, -1, 1)
            out, h = self.gru(x.unsqueeze(0), h)
            return out[0], h

        def unroll(self, x, h, starts):
            """A whole rollout (T, N, ·), memory zeroed where ``starts`` is set: the GRU runs over each stretch
            between the steps where some env starts an episode in one call (episodes of the default task all
            start together, every 200 steps, so a rollout has at most a few such stretches)."""
            cuts = [0] + [t for t in range(1, x.shape[0]) if bool(starts[t].any())] + [x.shape[0]]
            outs = []
            for begin, end in zip(cuts[:-1], cuts[1:]):
                h = h * (1.0 - starts[begin]).view(1, -1, 1)
                out, h = self.gru(x[begin:end], h)
                outs.append(out)
            return torch.cat(outs)

    return Agent()


def clock(step_in_episode: np.ndarray) -> np.ndarray:
    """(N, 2): step within the trial and trial number, in [0, 1)."""
    return np.stack([(step_in_episode % TRIAL_STEPS) / TRIAL_STEPS, (step_in_episode // TRIAL_STEPS) / TRIALS], 1)


def evaluate(
    agent, hidden: int, reward_scale: float, episodes: int = 1000, seed: int = 0, greedy: bool = False
) -> np.ndarray:
    """Episode rewards of the evaluation episodes (sub-env i plays episode i): actions sampled from the
    policy, or its most likely action with ``greedy``."""
    import torch

    envs = gym.make_vec("Alchemy/SymbolicEvaluation-v0", num_envs=episodes, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(options={"episode": np.arange(episodes)})
    torch.manual_seed(seed)
    n = episodes
    h = torch.zeros(1, n, hidden)
    prev_a, prev_r = torch.zeros(n, dtype=torch.long), torch.zeros(n)
    t = np.zeros(n, dtype=np.int64)
    total = np.zeros(n)
    start = torch.ones(n)
    with torch.no_grad():
        for _ in range(TRIAL_STEPS * TRIALS):
            x = agent.features(torch.tensor(obs), prev_a, prev_r, torch.tensor(clock(t), dtype=torch.float32))
            out, h = agent.step(x, h, start)
            logits = agent.policy(out)
            action = logits.argmax(-1) if greedy else torch.distributions.Categorical(logits=logits).sample()
            obs, r, terminated, _, _ = envs.step(action.numpy())
            total += r
            prev_a, prev_r, start = action, torch.tensor(r * reward_scale, dtype=torch.float32), torch.zeros(n)
            t += 1
    assert terminated.all()
    envs.close()
    return total


def report(rewards: np.ndarray, greedy: bool) -> None:
    how = "greedy" if greedy else "sampled"
    sem = rewards.std() / np.sqrt(len(rewards))
    print(f"evaluation episodes ({how} actions): mean {rewards.mean():.2f} ± {sem:.2f}")


def main(argv=None) -> dict:
    import torch
    from torch import nn

    args = parse(argv)
    torch.distributions.Distribution.set_default_validate_args(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run = Path(args.run_dir) if args.run_dir else None
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    obs_dim, n_actions = envs.single_observation_space.shape[0], envs.single_action_space.n
    agent = build(obs_dim, n_actions, args.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)
    state = {"steps": 0, "seconds": 0.0, "updates": 0}
    if run and (run / "checkpoint.pt").exists():
        saved = torch.load(run / "checkpoint.pt", weights_only=False)
        agent.load_state_dict(saved["agent"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        print(f"resumed at {state['steps']:,} steps ({state['seconds'] / 3600:.2f} h)")
    if args.eval_only:
        rewards = evaluate(agent, args.hidden, args.reward_scale, greedy=args.greedy)
        report(rewards, args.greedy)
        return {"eval_mean": float(rewards.mean()), **state}

    N, T = args.num_envs, args.num_steps
    obs_b = torch.zeros((T, N, obs_dim))
    clock_b = torch.zeros((T, N, 2))
    prev_a_b = torch.zeros((T, N), dtype=torch.long)
    prev_r_b = torch.zeros((T, N))
    start_b, act_b, logp_b, rew_b, done_b, val_b = (torch.zeros((T, N)) for _ in range(6))
    act_b = act_b.long()

    obs, _ = envs.reset(seed=args.seed + state["updates"])
    obs = torch.tensor(obs)
    h = torch.zeros(1, N, args.hidden)
    prev_a, prev_r, start = torch.zeros(N, dtype=torch.long), torch.zeros(N), torch.ones(N)
    t_ep = np.zeros(N, dtype=np.int64)
    ep_return = np.zeros(N)
    finished: list[float] = []
    progress = None
    if run:
        run.mkdir(parents=True, exist_ok=True)
        new = not (run / "progress.csv").exists()
        progress = open(run / "progress.csv", "a", newline="")  # noqa: SIM115 (kept open for the run)
        writer = csv.writer(progress)
        if new:
            writer.writerow(["steps", "hours", "mean_episode_reward", "episodes"])
    began, last_checkpoint = time.time() - state["seconds"], time.time()

    def save():
        torch.save({"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, run / "tmp.pt")
        os.replace(run / "tmp.pt", run / "checkpoint.pt")

    while state["steps"] < args.total_timesteps:
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.lr * max(0.0, 1.0 - state["steps"] / args.total_timesteps)
        h0 = h.clone()
        with torch.inference_mode():
            for t in range(T):
                c = torch.tensor(clock(t_ep), dtype=torch.float32)
                obs_b[t], clock_b[t], prev_a_b[t], prev_r_b[t], start_b[t] = obs, c, prev_a, prev_r, start
                x = agent.features(obs, prev_a, prev_r, c)
                out, h = agent.step(x, h, start)
                dist = torch.distributions.Categorical(logits=agent.policy(out))
                action = dist.sample()
                act_b[t], logp_b[t], val_b[t] = action, dist.log_prob(action), agent.value(out).squeeze(-1)
                o, r, terminated, truncated, _ = envs.step(action.numpy())
                done = np.logical_or(terminated, truncated)
                ep_return += r
                finished += ep_return[done].tolist()
                ep_return[done] = 0.0
                t_ep = np.where(done, 0, t_ep + 1)
                rew_b[t] = torch.tensor(r * args.reward_scale, dtype=torch.float32)
                done_b[t] = torch.tensor(done, dtype=torch.float32)
                obs = torch.tensor(o)
                prev_a = torch.where(torch.tensor(done), torch.zeros_like(action), action)
                prev_r = torch.where(torch.tensor(done), torch.zeros(N), rew_b[t])
                start = done_b[t]
            x = agent.features(obs, prev_a, prev_r, torch.tensor(clock(t_ep), dtype=torch.float32))
            out, _ = agent.step(x, h, start)
            next_value = agent.value(out).squeeze(-1)
            adv = torch.zeros_like(rew_b)
            last = torch.zeros(N)
            for t in reversed(range(T)):
                nonterminal = 1.0 - done_b[t]
                value_next = next_value if t == T - 1 else val_b[t + 1]
                delta = rew_b[t] + args.gamma * value_next * nonterminal - val_b[t]
                adv[t] = last = delta + args.gamma * args.gae_lambda * nonterminal * last
            ret = adv + val_b
        env_groups = np.array_split(np.random.permutation(N), args.minibatches)
        for _epoch in range(args.update_epochs):
            for envs_mb in env_groups:
                mb = torch.tensor(envs_mb)
                x = agent.features(obs_b[:, mb], prev_a_b[:, mb], prev_r_b[:, mb], clock_b[:, mb])
                out = agent.unroll(x, h0[:, mb], start_b[:, mb])
                dist = torch.distributions.Categorical(logits=agent.policy(out))
                ratio = (dist.log_prob(act_b[:, mb]) - logp_b[:, mb]).exp()
                a = adv[:, mb]
                a = (a - a.mean()) / (a.std() + 1e-8)
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
                v = 0.5 * ((agent.value(out).squeeze(-1) - ret[:, mb]) ** 2).mean()
                loss = pg + args.vf_coef * v - args.ent_coef * dist.entropy().mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
                optimizer.step()
        state["steps"] += T * N
        state["updates"] += 1
        state["seconds"] = time.time() - began
        if finished and state["updates"] % 10 == 0:
            mean = float(np.mean(finished))
            print(
                f"{state['steps']:>12,} steps  {state['seconds'] / 3600:6.2f} h  "
                f"mean episode reward {mean:7.2f} over {len(finished)} episodes",
                flush=True,
            )
            if progress:
                writer.writerow([state["steps"], round(state["seconds"] / 3600, 4), round(mean, 3), len(finished)])
                progress.flush()
            finished = []
        if run and time.time() - last_checkpoint > args.checkpoint_every:
            save()
            last_checkpoint = time.time()
    if run:
        save()
        progress.close()
    envs.close()
    out = dict(state)
    if args.eval:
        rewards = evaluate(agent, args.hidden, args.reward_scale, greedy=args.greedy)
        out["eval_mean"] = float(rewards.mean())
        report(rewards, args.greedy)
    return out


if __name__ == "__main__":
    main()
