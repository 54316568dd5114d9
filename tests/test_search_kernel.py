"""The C search kernel (``alchemy_gym.agents._search``) against the pure Python search of the ideal observer.

Both paths must give the same values, expected depths and actions (every tie-break), and the same node
semantics: the same number of nodes searched and the same memo sizes (as long as the kernel's memo budget is
not reached; beyond it the kernel replaces entries where Python clears a whole memo).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from alchemy_gym.agents import ideal_observer as io
from alchemy_gym.agents.ideal_observer import IdealObserver, Planner, stone_obs, world_model
from alchemy_gym.core.chemistry import ChemistrySampler, LevelRules
from alchemy_gym.core.game import AlchemyGame, encode_action

pytestmark = pytest.mark.skipif(
    io._search_ext is None, reason="the C extension alchemy_gym.agents._search is not built (no compiler)"
)

RANDOM_BOTTLENECK = "alchemy/perceptual_mapping_randomized_with_random_bottleneck"
PURE = "ALCHEMY_GYM_PURE_PYTHON"


@pytest.fixture(autouse=True)
def _kernel_by_default(monkeypatch):
    """Each test starts with the kernel enabled, even when the suite runs with ALCHEMY_GYM_PURE_PYTHON set."""
    monkeypatch.delenv(PURE, raising=False)


@contextlib.contextmanager
def python_search(pure: bool):
    """Run the block with the pure Python search (``pure``) or the kernel."""
    old = os.environ.pop(PURE, None)
    if pure:
        os.environ[PURE] = "1"
    try:
        yield
    finally:
        os.environ.pop(PURE, None)
        if old is not None:
            os.environ[PURE] = old


def _memo_sizes(planner: Planner) -> tuple[int, int, int]:
    if planner._kernel is not None:
        s = planner._kernel.stats()
        return s["memo"], s["memo_shallow"], s["upper"]
    return len(planner.memo), len(planner._memo_shallow), len(planner._upper)


def _same(a, b):
    """Same (action, value, depth): value and depth within 1e-12 relative, the action exactly."""
    assert a[0] == b[0]
    assert a[1] == pytest.approx(b[1], rel=1e-12, abs=1e-12)
    assert a[2] == pytest.approx(b[2], rel=1e-12, abs=1e-12)


def _first_decision(i: int):
    from alchemy_gym.data import evaluation_episodes

    out = []
    for pure in (False, True):
        with python_search(pure):
            eps = evaluation_episodes()
            agent, game = IdealObserver(), AlchemyGame()
            game.start_episode(eps[i].chemistry, items=eps[i].trials)
            agent.reset(game, i)
            action = agent.act(game)
            planner = agent.planner
            assert (planner._kernel is None) == pure
            out.append((action, agent.last_value, planner.nodes, _memo_sizes(planner)))
    (a1, v1, n1, m1), (a2, v2, n2, m2) = out
    assert a1 == a2 and v1 == pytest.approx(v2, rel=1e-12) and n1 == n2 and m1 == m2
    return out


def test_first_decision_episode_1():
    out = _first_decision(1)
    assert out[0][2] == 15823 and out[0][1] == 5.09375


def test_a_full_memo_replaces_entries_and_keeps_decisions():
    """With a 1 MB budget (32768 entries) the kernel's memo overflows on episode 4's first decision (about
    35,000 entries; they are replaced, nodes searched again), yet the value, depth and action of the decision
    are those of the default budget."""
    from alchemy_gym.data import evaluation_episodes

    eps = evaluation_episodes()
    results = []
    with python_search(False):
        for mb in (256, 1):
            game = AlchemyGame()
            game.start_episode(eps[4].chemistry, items=eps[4].trials)
            agent = IdealObserver()
            agent.reset(game, 4)
            agent.planner.memo_mb = mb
            stones, potions = agent._sync(game)
            counts = tuple(sum(1 for q in potions if q == p) for p in range(6))
            results.append(agent.planner.best_action(agent._stone_order, counts, agent._colour_order))
            results.append(agent.planner._kernel.stats())
    (big, big_stats), (small, small_stats) = results[:2], results[2:]
    assert big_stats["replaced"] == 0 and small_stats["replaced"] > 0
    assert small_stats["nodes"] > big_stats["nodes"]
    _same(small, big)
    with pytest.raises(ValueError, match="memo_mb"):
        Planner(world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK)), memo_mb=0)


def test_first_decision_episode_4_kernel():
    """The kernel alone (about 1 s) against the pure Python figures of the same decision (checked by the next
    test): value, depth and action bit-identical, same nodes and memos."""
    from alchemy_gym.data import evaluation_episodes

    with python_search(False):
        eps = evaluation_episodes()
        agent, game = IdealObserver(), AlchemyGame()
        game.start_episode(eps[4].chemistry, items=eps[4].trials)
        agent.reset(game, 4)
        stones, potions = agent._sync(game)
        counts = tuple(sum(1 for q in potions if q == p) for p in range(6))
        planner = agent.planner
        action, value, depth = planner.best_action(agent._stone_order, counts, agent._colour_order)
    assert planner._kernel is not None
    assert (action, value, depth) == ((74, 3), 35.19281684027778, 7.168511284722221)
    assert planner.nodes == 37251 and _memo_sizes(planner) == (26872, 2792, 23045)
    # Without the perfect-information bound: the same decision, bit for bit, from 3.7 times the nodes.
    with python_search(False):
        planner = Planner(agent.planner.model)
        planner.pi_bound = False
        planner.new_trial(list(agent._stone_order))
        assert planner.best_action(agent._stone_order, counts, agent._colour_order) == (action, value, depth)
    assert planner.nodes == 136710 and _memo_sizes(planner) == (65785, 8499, 45803)


def test_first_decision_episode_4():
    """Kernel and pure Python search on the same decision (the Python half takes about 60 s)."""
    out = _first_decision(4)
    assert out[0][2] == 37251


def _planners(model, stones, sym=None, minimise=False):
    out = []
    for _ in range(2):
        planner = Planner(model, minimise_world_states=minimise)
        planner.new_trial(list(stones))
        if sym is not None:
            planner.sym_mode = sym
        out.append(planner)
    return out


def _states_agree(cases, sym: bool, minimise: bool = False) -> None:
    """Kernel and Python planners on hand-made first-trial states, before and after an observation: the same
    best action, value and depth, nodes, memos and action_values (no pruning at the top)."""
    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    for stones, potions in cases:
        for observe in (False, True):
            pk, pp = _planners(model, stones, sym, minimise)
            if observe:
                o = stones[0]
                res, _ = pk._outcomes(o, 1)[-1]  # some move of the stone that is possible
                for planner in (pk, pp):
                    planner.observe(o, 1, res)
                    planner.sym_mode = sym and planner.sym_mode
                stones = (res,) + stones[1:]
                potions = potions[:1] + (max(potions[1] - 1, 0),) + potions[2:]
            order = (3, 1, 0, 5, 2, 4)
            with python_search(False):
                ka = pk.best_action(stones, potions, order)
                kv = pk.action_values(stones, potions)
            with python_search(True):
                pa = pp.best_action(stones, potions, order)
                pv = pp.action_values(stones, potions)
            assert pk._kernel is not None and pp._kernel is None
            _same(ka, pa)
            if minimise:
                assert ka[1] <= -1  # at least one world state is always left
            assert pk.nodes == pp.nodes > 0 and _memo_sizes(pk) == _memo_sizes(pp)
            assert kv.keys() == pv.keys()
            for key in kv:
                assert kv[key] == pytest.approx(pv[key], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("sym", [True, False])
def test_planner_states_and_action_values(sym):
    """Hand-made first-trial states (symmetry keys on and off), with and without an observation."""
    _states_agree(
        [
            ((stone_obs((-1, -1, 1), -1), stone_obs((1, 1, -1), 1), stone_obs((-1, -1, 1), -1)), (1, 1, 1, 1, 1, 0)),
            ((stone_obs((-1, -1, 1), -1), stone_obs((1, 1, -1), 1), stone_obs((-1, -1, 1), -1)), (0, 3, 2, 0, 0, 1)),
            ((stone_obs((1, -1, -1), -1), stone_obs((-1, -1, -1), -3)), (2, 1, 0, 1, 2, 1)),
            ((stone_obs((1, 1, 1), 3), stone_obs((-1, 1, 1), 1), stone_obs((-1, -1, -1), -3)), (1, 1, 2, 0, 1, 1)),
        ],
        sym,
    )


@pytest.mark.parametrize("sym", [True, False])
def test_explorer_states_and_action_values(sym):
    """The ideal explorer (fewest world states at trial end: no bounds, no floors) on hand-made states."""
    _states_agree(
        [
            ((stone_obs((-1, -1, 1), -1), stone_obs((1, 1, -1), 1), stone_obs((-1, -1, 1), -1)), (1, 1, 1, 1, 0, 0)),
            ((stone_obs((1, -1, -1), -1), stone_obs((-1, -1, -1), -3)), (2, 1, 0, 1, 0, 1)),
            ((stone_obs((1, 1, 1), 3), stone_obs((-1, 1, 1), 1), stone_obs((-1, -1, -1), -3)), (0, 1, 2, 0, 1, 1)),
        ],
        sym,
        minimise=True,
    )


def test_explorer_first_decision_episode_1():
    """A full-size first decision of the ideal explorer (3 stones, 12 potions; about 6 s in Python): same action,
    value and nodes in both paths, and its value is what the explorer expects to leave: fewer world states than
    the ideal observer's decision leads to."""
    from alchemy_gym.data import evaluation_episodes

    eps = evaluation_episodes()
    out = []
    for pure in (False, True):
        with python_search(pure):
            agent, game = io.ideal_explorer(), AlchemyGame()
            game.start_episode(eps[1].chemistry, items=eps[1].trials)
            agent.reset(game, 1)
            action = agent.act(game)
            assert (agent.planner._kernel is None) == pure
            out.append((action, agent.last_value, agent.planner.nodes))
    assert out[0][0] == out[1][0] and out[0][2] == out[1][2]
    assert out[0][1] == pytest.approx(out[1][1], rel=1e-12)
    planner = agent.planner
    assert -planner.num_world_states() < out[0][1] < -1  # it expects to learn something, not everything


@pytest.mark.parametrize(
    ("level", "potions", "bonus", "seeds"),
    [
        (RANDOM_BOTTLENECK, 7, 12.0, range(4)),
        (RANDOM_BOTTLENECK, 6, 12.37, range(4, 8)),  # a bonus that makes the order of float sums matter
        ("alchemy/perceptual_mapping_randomized", 7, 0.1, range(3)),
        ("alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck", 5, 12.0, range(3)),
    ],
)
def test_random_first_trial_states_bit_identical(level, potions, bonus, seeds):
    """Random stones, potion counts and colour orders at a trial start: bit-identical values and depths, the
    same action, nodes and memo sizes."""
    model = world_model(LevelRules.from_level_name(level))
    possible = np.flatnonzero((model.latent >= 0).any(axis=0))
    for seed in seeds:
        rs = np.random.RandomState(seed)
        while True:
            stones = tuple(int(x) for x in rs.choice(possible, 3))
            planners = [Planner(model, bonus=bonus) for _ in range(2)]
            try:
                for planner in planners:
                    planner.new_trial(list(stones))
                break
            except RuntimeError:  # stones that no chemistry allows together
                continue
        counts = tuple(int(x) for x in np.bincount(rs.randint(0, 6, potions), minlength=6))
        order = tuple(int(x) for x in rs.permutation(6))
        out = []
        for pure, planner in zip((False, True), planners):
            with python_search(pure):
                out.append((planner.best_action(stones, counts, order), planner.nodes, _memo_sizes(planner)))
        assert out[0] == out[1]


def _noop_or_end(game: AlchemyGame) -> int:
    return 1 if game.end_trial_action else 0


@pytest.mark.parametrize(
    ("level", "stones", "potions", "trials", "oracle", "seed"),
    [
        (RANDOM_BOTTLENECK, 3, 8, 4, False, 0),
        (RANDOM_BOTTLENECK, 2, 9, 3, False, 1),
        ("alchemy/perceptual_mapping_randomized", 3, 8, 3, False, 2),
        ("alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck", 3, 6, 3, False, 3),
        ("alchemy/all_fixed", 3, 10, 2, False, 4),
        (RANDOM_BOTTLENECK, 3, 12, 3, True, 5),
        (RANDOM_BOTTLENECK, 3, 6, 2, "explorer", 6),
        ("alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck", 2, 6, 2, "explorer", 7),
    ],
)
def test_random_walks_decide_alike(level, stones, potions, trials, oracle, seed):
    """Two observers (kernel, Python) follow the same game: half the moves are theirs (which must agree), half
    random (to reach varied beliefs); every decision, later ones of a trial from the memo, must be the same."""
    rs = np.random.RandomState(seed)
    game = AlchemyGame(num_trials=trials, num_stones_per_trial=stones, num_potions_per_trial=potions)
    game.start_episode(ChemistrySampler(LevelRules.from_level_name(level)).sample(rs), rs)
    if oracle == "explorer":
        agents = (IdealObserver(level, minimise_world_states=True), IdealObserver(level, minimise_world_states=True))
    else:
        agents = (IdealObserver(level, oracle=oracle), IdealObserver(level, oracle=oracle))
    for agent in agents:
        agent.reset(game)
    decisions = 0
    while not game.episode_over:
        present = [s for s, x in enumerate(game.stones) if x >= 0]
        full = [q for q, x in enumerate(game.potions) if x >= 0]
        if rs.rand() < 0.5 and present and full:
            action = encode_action(int(rs.choice(present)), int(rs.choice(full)), game.end_trial_action)
            for agent in agents:
                agent.follow(game, action)
            game.step(action)
            continue
        out = []
        for pure, agent in zip((False, True), agents):
            with python_search(pure):
                nodes = agent.planner.nodes
                action = agent.act(game)
                out.append((action, agent.last_value, agent.planner.nodes - nodes, agent.ending_trial))
        assert out[0][0] == out[1][0] and out[0][3] == out[1][3] and out[0][2] == out[1][2]
        if out[0][1] is not None:
            assert out[0][1] == pytest.approx(out[1][1], rel=1e-12, abs=1e-12)
        decisions += 1
        action = out[0][0]
        if action == _noop_or_end(game) and agents[0].ending_trial:
            game.end_trial()
        else:
            game.step(action)
    assert decisions > 0
    print(level, "decisions", decisions, "nodes", agents[0].planner.nodes)
    assert agents[0].planner._kernel is not None and agents[1].planner._kernel is None


def test_episode_end_to_end_same_events():
    """A whole evaluation episode (1) played by the kernel and by the Python search: same matrix events."""
    from alchemy_gym.agents.base import run_episode
    from alchemy_gym.data import evaluation_episodes

    games = []
    for pure in (False, True):
        with python_search(pure):
            eps = evaluation_episodes()
            game = AlchemyGame()
            game.start_episode(eps[1].chemistry, items=eps[1].trials)
            run_episode(IdealObserver(), game, 1)
            games.append(game)
    assert games[0].trial_rewards == games[1].trial_rewards
    assert (np.asarray(games[0].matrix_events) == np.asarray(games[1].matrix_events)).all()


def test_python_path_when_disabled():
    """``ALCHEMY_GYM_PURE_PYTHON`` keeps the Python search (the ideal explorer's too)."""
    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    o = stone_obs((1, 1, 1), 1)
    for minimise in (False, True):
        with python_search(True):
            planner = Planner(model, minimise_world_states=minimise)
            planner.new_trial([o])
            planner.best_action((o,), (1, 1, 0, 0, 0, 0))
            assert planner._kernel is None
        with python_search(False):
            planner = Planner(model, minimise_world_states=minimise)
            planner.new_trial([o])
            planner.best_action((o,), (1, 1, 0, 0, 0, 0))
            assert planner._kernel is not None
    with python_search(False):
        planner = Planner(model)
        planner.new_trial([o])
        planner.best_action((o,), (1, 1, 0, 0, 0, 0))
        assert planner._kernel is not None


def test_planner_copies_without_the_kernel():
    """A copied (or pickled) planner drops the C kernel and builds its own: same decision."""
    import copy
    import pickle

    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    o = stone_obs((1, 1, 1), 1)
    planner = Planner(model)
    planner.new_trial([o])
    first = planner.best_action((o,), (1, 1, 1, 0, 0, 0))
    for other in (copy.deepcopy(planner), pickle.loads(pickle.dumps(planner))):
        assert other._kernel is None
        assert other.best_action((o,), (1, 1, 1, 0, 0, 0)) == first
        assert other._kernel is not None


def test_pi_table_equals_the_python_perfect_information_values():
    """The kernel's tabulated perfect-information values (blocks per count vector, computed from the blocks one
    potion smaller) equal Planner._pi_value on random states of every size the bound uses."""
    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    planner = Planner(model)
    table = io._search_ext.PiTable(
        len(model.graph_masks), model._trans.astype(np.int8).tobytes(), bytes(model.latent_codes), 12.0, 1 << 30
    )
    rng = np.random.default_rng(5)
    codes = set()
    for _ in range(300):
        nst = int(rng.integers(1, 6))
        stones = tuple(sorted(int(x) for x in rng.integers(0, 8, nst)))
        counts = [int(x) for x in rng.multinomial(int(rng.integers(0, 12 if nst <= 3 else 7)), [1 / 6] * 6)]
        g = int(rng.integers(len(model.graph_masks)))
        code = planner._pi_value(g, stones, list(counts))
        assert table.value(g, list(reversed(stones)), counts) == code, (g, stones, counts)
        codes.add(code)
    assert len(codes) > 8  # the states reach many different values
    assert table.stats()["clears"] == 0 and table.stats()["bytes"] > 0


def test_pi_table_budget_and_bad_input():
    """Over its byte budget the table drops its blocks (at the start of the next bound) and recomputes them:
    episode 1's first decision (about 16 MB of blocks) with a 14 MB budget is the default one, node for node."""
    from alchemy_gym.agents.ideal_observer import WorldModel
    from alchemy_gym.data import evaluation_episodes

    rules = LevelRules.from_level_name(RANDOM_BOTTLENECK)
    model = WorldModel(rules)
    trans = model._trans.astype(np.int8).tobytes()
    small = io._search_ext.PiTable(len(model.graph_masks), trans, bytes(model.latent_codes), 12.0, 14 << 20)
    model._pi_caches[12.0] = small
    eps = evaluation_episodes()
    game = AlchemyGame()
    game.start_episode(eps[1].chemistry, items=eps[1].trials)
    agent = IdealObserver()
    agent.reset(game, 1)
    stones, potions = agent._sync(game)
    counts = tuple(sum(1 for q in potions if q == p) for p in range(6))
    planner = Planner(model)
    planner.new_trial(list(agent._stone_order))
    with python_search(False):
        decision = planner.best_action(agent._stone_order, counts, agent._colour_order)
    assert planner._kernel is not None and small.stats()["clears"] >= 3
    assert planner.nodes == 15823 and decision[1] == 5.09375
    with pytest.raises(ValueError, match="at most 15 potions"):
        small.value(0, [0], [16, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="latent stone out of range"):
        small.value(0, [8], [1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="inconsistent table sizes"):
        io._search_ext.PiTable(len(model.graph_masks), trans[:-1], bytes(model.latent_codes), 12.0, 1)
    with pytest.raises(ValueError, match="code must be 0, 1 or 16"):
        io._search_ext.PiTable(len(model.graph_masks), trans, bytes(8 * [2]), 12.0, 1)
    other = io._search_ext.PiTable(len(model.graph_masks), trans, bytes(model.latent_codes), 11.0, 1)
    model._pi_caches[12.0] = other
    planner = Planner(model)
    planner.new_trial(list(agent._stone_order))
    with python_search(False), pytest.raises(ValueError, match="another world model or bonus"):
        planner.best_action(agent._stone_order, counts, agent._colour_order)
