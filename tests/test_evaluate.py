"""``alchemy-gym evaluate`` (alchemy_gym/evaluation.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from alchemy_gym import cli
from alchemy_gym.evaluation import main


def run_json(capsys, *args) -> dict:
    assert main([*args, "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_output_has_the_documented_fields(capsys):
    out = run_json(capsys, "--agent", "positive", "--episodes", "0:50")
    assert out["agent"] == "positive" and out["level"] == "alchemy/evaluation_episodes"
    assert [e["episode"] for e in out["episodes"]] == list(range(50))
    assert all(len(e["trial_rewards"]) == 10 for e in out["episodes"])
    totals = [sum(e["trial_rewards"]) for e in out["episodes"]]
    assert out["mean"] == pytest.approx(np.mean(totals))
    assert out["se"] == pytest.approx(np.std(totals, ddof=1) / np.sqrt(50))
    assert sum(out["episodes"][0]["trial_rewards"]) == 59  # cash-positive on episode 0


def test_replay_reproduces_the_published_mean(capsys):
    """§4.5: replaying the ideal observer's events gives 284.42 over the 1000 episodes, episode 0 = 207."""
    out = run_json(capsys, "--agent", "replay:ideal_observer")
    assert out["mean"] == pytest.approx(284.417)
    assert sum(out["episodes"][0]["trial_rewards"]) == 207


def test_table_for_several_agents_and_cli_dispatch(capsys):
    assert cli.main(["evaluate", "--agent", "positive", "--agent", "replay:baseline", "--episodes", ":20"]) == 0
    out = capsys.readouterr().out
    assert "positive" in out and "replay:baseline" in out
    assert out.strip().splitlines()[-1].startswith("episode")


def test_slices_select_episodes(capsys):
    out = run_json(capsys, "--agent", "positive", "--episodes", "990:")
    assert [e["episode"] for e in out["episodes"]] == list(range(990, 1000))
    out = run_json(capsys, "--agent", "positive", "--episodes", "3")
    assert [e["episode"] for e in out["episodes"]] == [0, 1, 2]
    out = run_json(capsys, "--agent", "positive", "--level", "alchemy/evaluation_episodes/17")
    assert [e["episode"] for e in out["episodes"]] == [17]


def test_random_levels_are_seeded_per_episode(capsys):
    args = ["--agent", "random", "--level", "Alchemy/SymbolicStandard-v0", "--seed", "5"]
    whole = run_json(capsys, *args, "--episodes", "0:6")
    part = run_json(capsys, *args, "--episodes", "4:6")
    assert whole["episodes"][4:] == part["episodes"]
    other = run_json(capsys, *args[:-1], "6", "--episodes", "4:6")
    assert other["episodes"] != part["episodes"]


def test_workers_give_the_same_results(capsys):
    one = run_json(capsys, "--agent", "random", "--episodes", "0:60")
    two = run_json(capsys, "--agent", "random", "--episodes", "0:60", "--workers", "2")
    assert one["episodes"] == two["episodes"]


def test_ideal_observer_on_a_fixed_level(capsys):
    """On all_fixed the prior is one chemistry: the observer and the search oracle agree."""
    io = run_json(capsys, "--agent", "ideal-observer", "--level", "alchemy/all_fixed", "--episodes", "2")
    oracle = run_json(capsys, "--agent", "search-oracle", "--level", "alchemy/all_fixed", "--episodes", "2")
    assert io["episodes"] == oracle["episodes"]
    assert io["mean"] > 200


def test_search_oracle_matches_the_published_events_scores(capsys):
    oracle = run_json(capsys, "--agent", "search-oracle", "--episodes", "0:5")
    published = run_json(capsys, "--agent", "replay:search_oracle", "--episodes", "0:5")
    assert oracle["episodes"] == published["episodes"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "oracle"], "unknown agent 'oracle'"),
        (["--agent", "replay:"], "replay needs events"),
        (["--episodes", "a:b"], "--episodes 'a:b' is not N or START:STOP[:STEP]: allowed N from 1 to 1000"),
        (["--episodes", "5:2"], "selects no episodes"),
        (["--episodes", "1:2:0"], "the step cannot be 0"),
        (["--episodes", "5000"], "--episodes 5000 is out of range; allowed N from 1 to 1000"),
        (["--episodes", "-3"], "(for the last 3 use --episodes=-3:)"),
        (["--episodes", "0:1001"], "STOP 1001 is beyond the level's 1000 episodes"),
        (["--episodes", "-1001:"], "START -1001 is beyond the level's 1000 episodes"),
        (["--level", "alchemy/nowhere"], "unknown Alchemy level"),
        (["--level", "alchemy/evaluation_episodes/1000"], "not valid"),
        (["--level", "alchemy/evaluation_episodes/3", "--episodes", "2"], "names one evaluation episode (3)"),
        (["--agent", "replay:baseline", "--level", "alchemy/all_fixed"], "replays recorded evaluation episodes"),
        (["--agent", "replay:/no/such/file"], "no agent events file"),
        (["--workers", "0"], "argument --workers: got '0', allowed an integer >= 1"),
        (["--seed", "-1"], "argument --seed: got '-1', allowed an integer from 0 to 4294967295"),
        (["--level", "alchemy/all_fixed", "--episodes", ":"], "a random level has no last episode"),
        (["--level", "alchemy/all_fixed", "--episodes", "-5:"], "a random level has no last episode"),
        (["--level", "alchemy/all_fixed", "--episodes", "20000000"], "allowed N from 1 to 10,000,000"),
        (["--level", "alchemy/all_fixed", "--episodes", "0:4294967297"], "end at 4294967295"),
        (["--agent", "positive", "--plot", "/no/such/folder/trials.png"], "cannot write in '/no/such/folder'"),
    ],
)
def test_bad_input_fails_before_any_work_with_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main([*args, "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("alchemy-gym evaluate: error: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", [0, 1, 2]),
        ("1000", list(range(1000))),
        ("990:", list(range(990, 1000))),
        (":3", [0, 1, 2]),
        ("5:9", [5, 6, 7, 8]),
        ("0:10:4", [0, 4, 8]),
        ("-3:", [997, 998, 999]),
        ("-5:-2", [995, 996, 997]),
        ("::-300", [999, 699, 399, 99]),
        ("3:0:-1", [3, 2, 1]),
        ("-1000:3", [0, 1, 2]),
        ("0:1000:250", [0, 250, 500, 750]),
    ],
)
def test_episodes_take_n_or_python_slices_of_the_evaluation_episodes(text, expected):
    from alchemy_gym.evaluation import parse_episodes, resolve_level

    assert parse_episodes(text, resolve_level("alchemy/evaluation_episodes")) == expected


@pytest.mark.parametrize(("text", "expected"), [("4", [0, 1, 2, 3]), ("7:10", [7, 8, 9]), ("2:11:4", [2, 6, 10])])
def test_episodes_of_a_random_level_start_at_zero_and_have_no_end(text, expected):
    from alchemy_gym.evaluation import parse_episodes, resolve_level

    assert parse_episodes(text, resolve_level("alchemy/all_fixed")) == expected


def test_a_slice_starting_with_a_dash_is_a_value_not_an_option(capsys):
    out = run_json(capsys, "--agent", "positive", "--episodes", "-2:")
    assert [e["episode"] for e in out["episodes"]] == [998, 999]


def test_replay_file_must_cover_the_episodes(tmp_path, capsys):
    from alchemy_gym.data.protos import messages

    m = messages()
    events = m.EvaluationSetEvents()
    for _ in range(3):
        episode = events.episode_events.add()
        for _ in range(10):
            trial = episode.trial_events.add()
            trial.entries.extend([-1] * 39)
            trial.shape.extend([3, 13])
    path = tmp_path / "three.pb"
    path.write_bytes(events.SerializeToString())
    out = run_json(capsys, "--agent", f"replay:{path}", "--episodes", "0:3")
    assert out["mean"] == 0.0
    with pytest.raises(SystemExit):
        main(["--agent", f"replay:{path}", "--episodes", "0:10", "--no-progress"])
    assert "holds 3 episodes" in capsys.readouterr().err


def test_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    path = tmp_path / "trials.png"
    assert main(["--agent", "positive", "--agent", "random", "--episodes", "0:20", "--plot", str(path)]) == 0
    assert path.stat().st_size > 1000


def test_ray_gives_the_same_results_as_local_workers(capsys):
    pytest.importorskip("ray", reason="ray is the optional 'ray' extra")
    local = run_json(capsys, "--agent", "random", "--episodes", "0:6", "--workers", "2")
    remote = run_json(capsys, "--agent", "random", "--episodes", "0:6", "--ray")
    assert local["episodes"] == remote["episodes"]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not a running process
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _ignores_sigint(pid: int) -> bool:
    """Whether a process has set SIGINT to ignored (its ``SigIgn`` mask in /proc): the evaluation's workers do
    so when their pool starts them, so they are ready for the parent's Ctrl-C."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line for line in f if line.startswith("SigIgn:")).split()[1]
    except (FileNotFoundError, StopIteration):
        return False
    return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))


def _sigint_by_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and pgrep")
def test_ctrl_c_stops_the_workers():
    proc = subprocess.Popen(
        [sys.executable, "-m", "alchemy_gym.cli", "evaluate", "--agent", "ideal-observer", "--episodes", "0:40"]
        + ["--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as a terminal gives it: a test run started in the background (``cmd &`` in a script, as CI may
        # be) has SIGINT ignored, which Python, and so the evaluation, would inherit and keep
        preexec_fn=_sigint_by_default,
    )
    try:
        # the moment to press Ctrl-C is when both workers exist and ignore SIGINT themselves (no sleep on a clock)
        ready = _wait_for(lambda: len([p for p in _children(proc.pid) if _ignores_sigint(p)]) >= 2, timeout=300)
        assert ready, "the workers did not start"
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err
    assert _wait_for(lambda: not [pid for pid in workers if _alive(pid)], timeout=60)


@pytest.mark.parametrize(
    ("address", "match"),
    [("127.0.0.1:1", "no Ray cluster answers there"), ("not an address", "give HOST:PORT of a Ray head node")],
)
def test_ray_without_a_cluster_at_the_address_is_refused_before_any_work(address, match, capsys):
    pytest.importorskip("ray", reason="ray is the optional 'ray' extra")
    with pytest.raises(SystemExit) as exit_info:
        main(["--agent", "random", "--episodes", "0:2", "--ray", address])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and "random:" not in err  # no progress bar: nothing started
