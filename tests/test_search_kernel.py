"""The C search kernel (``alchemy_gym.agents._search``): the ideal observer's one full search.

* On small states its values, expected potion counts and decisions are those of the plain expectimax
  (``reference_search``: no bounds, no symmetry keys, no colour classes), for the ideal observer, the ideal
  explorer and the search oracle, on several levels.
* On full-size states it gives the values, decisions and node counts it gave before its inputs became named
  structures (figures recorded from that version, value and depth as exact floats): pruning or memo changes
  that alter the nodes searched show up here, and so would any change of a decision.
* Its inputs are read by name and checked; the perfect-information table holds the values of a plain game.
"""

from __future__ import annotations

import copy
import functools
import itertools
import pickle

import numpy as np
import pytest

from alchemy_gym.agents import ideal_observer as io
from alchemy_gym.agents.ideal_observer import (
    END,
    IdealObserver,
    KernelTables,
    Planner,
    SearchRequest,
    stone_obs,
    world_model,
)
from alchemy_gym.core.chemistry import ChemistrySampler, LevelRules
from alchemy_gym.core.game import AlchemyGame, encode_action

pytestmark = pytest.mark.skipif(
    not io.kernel_available(), reason="the C extension alchemy_gym.agents._search is not built (no compiler)"
)

RANDOM_BOTTLENECK = "alchemy/perceptual_mapping_randomized_with_random_bottleneck"
NO_BOTTLENECK = "alchemy/perceptual_mapping_randomized"
ROTATION = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
S = stone_obs


def _model(level: str = RANDOM_BOTTLENECK):
    return world_model(LevelRules.from_level_name(level))


def _pair(model, stones, *, minimise=False, bonus=12.0, sym=True):
    """A kernel planner and a reference planner at the start of a trial with ``stones``."""
    out = []
    for backend in ("c", "reference"):
        planner = Planner(model, bonus=bonus, minimise_world_states=minimise, backend=backend)
        planner.new_trial(list(stones))
        planner.sym_mode = sym and planner.sym_mode
        out.append(planner)
    return out


def _assert_same_decision(kernel, reference):
    """Same action; value and expected potions equal up to the order of float sums."""
    assert kernel[0] == reference[0]
    assert kernel[1] == pytest.approx(reference[1], rel=1e-9, abs=1e-9)
    assert kernel[2] == pytest.approx(reference[2], rel=1e-9, abs=1e-9)


def _assert_planners_agree(pk: Planner, pr: Planner, stones, potions, order, values: bool = True) -> None:
    _assert_same_decision(pk.best_action(stones, potions, order), pr.best_action(stones, potions, order))
    assert pk.nodes > 0 or sum(potions) <= 1 and not pk.minimise
    if values:
        kv, rv = pk.action_values(stones, potions), pr.action_values(stones, potions)
        assert kv.keys() == rv.keys()
        for key in kv:
            assert kv[key] == pytest.approx(rv[key], rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------- the kernel against the plain reference

HAND_MADE = [
    ((S((-1, -1, 1), -1), S((1, 1, -1), 1), S((-1, -1, 1), -1)), (1, 1, 1, 0, 0, 0)),
    ((S((-1, -1, 1), -1), S((1, 1, -1), 1), S((-1, -1, 1), -1)), (0, 2, 1, 0, 0, 1)),
    ((S((1, -1, -1), -1), S((-1, -1, -1), -3)), (1, 1, 0, 1, 0, 1)),
    ((S((1, 1, 1), 3), S((-1, 1, 1), 1), S((-1, -1, -1), -3)), (1, 0, 1, 0, 1, 0)),
    ((S((-1, 1, -1), -1),), (1, 1, 0, 0, 1, 0)),
]


@pytest.mark.parametrize("minimise", [False, True], ids=["observer", "explorer"])
@pytest.mark.parametrize("sym", [True, False], ids=["symmetry-keys", "belief-keys"])
def test_hand_made_states_match_the_reference(sym, minimise):
    """First-trial states of 1–3 stones and 3–4 potions, before and after an observation: the kernel's best
    action, value and expected potions, and (with symmetry keys) the value of every action, are the
    reference's."""
    model = _model()
    for stones, potions in HAND_MADE:
        for observe in (False, True):
            pk, pr = _pair(model, stones, minimise=minimise, sym=sym)
            st, po = stones, potions
            if observe:  # some possible move of the first stone in colour 1
                res, _ = pk._outcomes(stones[0], 1)[-1]
                for planner in (pk, pr):
                    planner.observe(stones[0], 1, res)
                st = (res,) + stones[1:]
                po = potions[:1] + (max(potions[1] - 1, 0),) + potions[2:]
            _assert_planners_agree(pk, pr, st, po, (3, 1, 0, 5, 2, 4), values=sym)


RANDOM_CASES = [
    # level, bonus, stones, potions, seeds
    (RANDOM_BOTTLENECK, 12.0, 3, 4, range(0, 5)),
    (RANDOM_BOTTLENECK, 12.37, 2, 4, range(5, 9)),  # a bonus that makes the order of float sums matter
    (RANDOM_BOTTLENECK, 0.0, 1, 4, range(9, 12)),
    (NO_BOTTLENECK, 0.1, 3, 5, range(12, 16)),
    (ROTATION, 12.0, 2, 4, range(16, 20)),
    ("alchemy/all_fixed", 12.0, 3, 6, range(20, 23)),
]


@pytest.mark.parametrize("minimise", [False, True], ids=["observer", "explorer"])
@pytest.mark.parametrize(("level", "bonus", "nstones", "npotions", "seeds"), RANDOM_CASES)
def test_random_small_states_match_the_reference(level, bonus, nstones, npotions, seeds, minimise):
    """Random stones, potion counts and colour orders at a trial start: same decision, value and expected
    potions as the reference."""
    model = _model(level)
    possible = np.flatnonzero((model.latent >= 0).any(axis=0))
    for seed in seeds:
        rs = np.random.RandomState(seed)
        while True:
            stones = tuple(int(x) for x in rs.choice(possible, nstones))
            try:
                pk, pr = _pair(model, stones, minimise=minimise, bonus=bonus)
                break
            except RuntimeError:  # stones that no chemistry allows together
                continue
        counts = tuple(int(x) for x in np.bincount(rs.randint(0, 6, npotions), minlength=6))
        order = tuple(int(x) for x in rs.permutation(6))
        _assert_planners_agree(pk, pr, stones, counts, order, values=False)


def _noop_or_end(game: AlchemyGame) -> int:
    return 1 if game.end_trial_action else 0


@pytest.mark.parametrize(
    ("level", "stones", "potions", "trials", "kind", "seed"),
    [
        (RANDOM_BOTTLENECK, 2, 4, 3, "observer", 0),
        (RANDOM_BOTTLENECK, 3, 3, 3, "observer", 1),
        (NO_BOTTLENECK, 2, 4, 3, "observer", 2),
        (ROTATION, 2, 4, 3, "observer", 3),
        (RANDOM_BOTTLENECK, 3, 5, 3, "oracle", 4),
        (RANDOM_BOTTLENECK, 2, 4, 2, "explorer", 5),
        (ROTATION, 2, 3, 2, "explorer", 6),
    ],
)
def test_random_walks_decide_as_the_reference(level, stones, potions, trials, kind, seed):
    """A kernel agent and a reference agent follow the same small game: half the moves random (to reach varied
    beliefs), half theirs, which must be the same, with the same expected objective."""
    rs = np.random.RandomState(seed)
    game = AlchemyGame(num_trials=trials, num_stones_per_trial=stones, num_potions_per_trial=potions)
    game.start_episode(ChemistrySampler(LevelRules.from_level_name(level)).sample(rs), rs)
    agents = [
        IdealObserver(level, minimise_world_states=kind == "explorer", oracle=kind == "oracle", backend=backend)
        for backend in ("c", "reference")
    ]
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
        out = [(agent.act(game), agent.last_value, agent.ending_trial) for agent in agents]
        assert out[0][0] == out[1][0] and out[0][2] == out[1][2]
        if out[0][1] is not None:
            assert out[0][1] == pytest.approx(out[1][1], rel=1e-9, abs=1e-9)
        decisions += 1
        if out[0][0] == _noop_or_end(game) and agents[0].ending_trial:
            game.end_trial()
        else:
            game.step(out[0][0])
    assert decisions > 0 and agents[0].planner.nodes > 0


# ---------------------------------------------------------------- the figures of the kernel before this version


def _first_decision(i: int, *, explorer: bool = False, pi_bound: bool = True, memo_mb: int = 256, model=None):
    """The first decision of evaluation episode ``i``: ``((action, value, depth), planner)``."""
    from alchemy_gym.data import evaluation_episodes

    eps = evaluation_episodes()
    game = AlchemyGame()
    game.start_episode(eps[i].chemistry, items=eps[i].trials)
    agent = IdealObserver(minimise_world_states=explorer)
    agent.reset(game, i)
    stones, potions = agent._sync(game)
    counts = tuple(sum(1 for q in potions if q == p) for p in range(6))
    planner = agent.planner
    if model is not None:
        planner = Planner(model)
        planner.new_trial(list(agent._stone_order))
    planner.pi_bound = pi_bound
    planner.memo_mb = memo_mb
    return planner.best_action(agent._stone_order, counts, agent._colour_order), planner


def _memo(planner: Planner) -> tuple[int, int, int]:
    s = planner.kernel_stats()
    return s["memo"], s["memo_shallow"], s["upper"]


def _h(x: str) -> float:
    return float.fromhex(x)


#: ((action, value, depth), nodes, memo sizes) of first decisions, as the kernel gave them before this version.
FIRST_DECISIONS = {
    "episode 1": (((73, 5), 5.09375, _h("0x1.9475555555555p+2")), 15823, (10750, 856, 7048)),
    "episode 1 without the perfect-information bound": (
        ((73, 5), 5.09375, _h("0x1.9475555555555p+2")),
        19258,
        (11248, 893, 5293),
    ),
    "episode 4": (((74, 3), _h("0x1.198ae38e38e39p+5"), _h("0x1.cac8e38e38e38p+2")), 37251, (26872, 2792, 23045)),
    "episode 4 without the perfect-information bound": (
        ((74, 3), _h("0x1.198ae38e38e39p+5"), _h("0x1.cac8e38e38e38p+2")),
        136710,
        (65785, 8499, 45803),
    ),
    "ideal explorer, episode 1": (
        ((73, 5), _h("-0x1.04c9c71c71c71p+6"), _h("0x1.80dc71c71c71bp+2")),
        66626,
        (53526, 13100, 0),
    ),
    "episode 0": (((96, 3), _h("0x1.d168e38e38e3ap+3"), _h("0x1.0f038e38e38e4p+3")), 417761, (235478, 38765, 315385)),
    "episode 3": (((24, 5), _h("0x1.0edc71c71c71cp+4"), _h("0x1.081c71c71c71cp+3")), 105791, (64450, 12346, 92983)),
}


def _check_first_decision(name: str, i: int, **kw) -> Planner:
    decision, planner = _first_decision(i, **kw)
    expected, nodes, memo = FIRST_DECISIONS[name]
    assert decision == expected  # bit for bit
    assert planner.nodes == nodes and _memo(planner) == memo
    return planner


def test_first_decisions_of_episodes_1_and_4():
    """Full-size first decisions (3 stones, 12 potions), with and without the perfect-information bound: the
    same decision either way, bit for bit; the bound only cuts nodes."""
    _check_first_decision("episode 1", 1)
    _check_first_decision("episode 1 without the perfect-information bound", 1, pi_bound=False)
    _check_first_decision("episode 4", 4)
    _check_first_decision("episode 4 without the perfect-information bound", 4, pi_bound=False)


def test_explorer_first_decision_episode_1():
    """The ideal explorer's full-size first decision: its value is minus the world states it expects to leave,
    fewer than now and more than one."""
    planner = _check_first_decision("ideal explorer, episode 1", 1, explorer=True)
    assert -planner.num_world_states() < FIRST_DECISIONS["ideal explorer, episode 1"][0][1] < -1


@pytest.mark.slow
def test_first_decisions_of_episodes_0_and_3():
    """Two harder first decisions (0.42M and 0.11M nodes)."""
    _check_first_decision("episode 0", 0)
    _check_first_decision("episode 3", 3)


def test_a_full_memo_replaces_entries_and_keeps_decisions():
    """With a 1 MB budget (32768 entries) the memo overflows on episode 4's first decision (about 50,000
    entries): entries are replaced and nodes searched again, yet the decision is the default budget's."""
    small, planner = _first_decision(4, memo_mb=1)
    stats = planner.kernel_stats()
    assert stats["replaced"] > 0 and stats["nodes"] > FIRST_DECISIONS["episode 4"][1]
    assert small == FIRST_DECISIONS["episode 4"][0]
    with pytest.raises(ValueError, match="memo_mb"):
        Planner(_model(), memo_mb=0)


LEVELS = {"rb": RANDOM_BOTTLENECK, "nb": NO_BOTTLENECK, "rot": ROTATION, "fixed": "alchemy/all_fixed"}

#: Trial starts as the kernel decided them before: level, bonus | stones | count of each colour (digits) | colour
#: order (digits) | action | value, expected potions (exact floats) | nodes | memo sizes (exact values with more than
#: two and with two potions left, upper bounds)
FIRST_TRIALS = """
rb 12.0 | 97 33 24 | 210211 | 451032 | 24 3 | 0x1.37e1c71c71c72p+3 0x1.865c71c71c71cp+2 | 7527 | 1841 2834 4883
rb 12.0 | 104 10 97 | 002131 | 305142 | 104 4 | 0x1.723c71c71c71dp+3 0x1.56f1c71c71c71p+2 | 3145 | 1110 927 1722
rb 12.0 | 11 2 73 | 001132 | 105243 | 73 4 | 0x1.93c38e38e38e2p+4 0x1.302e38e38e38ep+2 | 1169 | 619 371 583
rb 12.0 | 105 11 34 | 114010 | 405231 | 105 2 | 0x1.791eaaaaaaaaap+4 0x1.15e8e38e38e3ap+2 | 337 | 264 44 225
rb 12.37 | 83 24 74 | 121011 | 135024 | 24 2 | 0x1.9e9de4b17e4b1p+4 0x1.3ab1c71c71c71p+2 | 797 | 232 330 604
rb 12.37 | 1 35 106 | 022011 | 304251 | 1 2 | 0x1.83e0987654321p+4 0x1.326aaaaaaaaaap+2 | 515 | 199 264 117
rb 12.37 | 35 26 72 | 031101 | 350241 | 72 1 | 0x1.77a87d27d27d2p+4 0x1.1655555555556p+2 | 127 | 62 49 90
rb 12.37 | 1 99 106 | 031002 | 051423 | 1 1 | 0x1.5c3ff258bf258p+4 0x1.0f35555555555p+2 | 389 | 204 143 81
nb 0.1 | 97 33 24 | 210211 | 451032 | 24 3 | 0x1.cbbbbbbbbbbbcp+1 0x1.42aaaaaaaaaabp+2 | 895 | 529 192 836
nb 0.1 | 104 10 97 | 002131 | 305142 | 97 4 | 0x1.0111111111110p+2 0x1.0aaaaaaaaaaaap+2 | 535 | 384 118 216
nb 0.1 | 11 2 73 | 001132 | 105243 | 73 5 | 0x1.95ddddddddddep+2 0x1.d555555555555p+1 | 573 | 403 89 338
rot 12.0 | 44 77 5 | 120020 | 410352 | 44 4 | 0x1.f631c71c71c71p+1 0x1.13a38e38e38e4p+2 | 614 | 122 329 204
rot 12.0 | 46 71 5 | 113000 | 351420 | 5 2 | 0x1.60d0000000000p+4 0x1.afb1c71c71c72p+1 | 62 | 30 31 15
rot 12.0 | 9 98 98 | 111110 | 532410 | 98 3 | 0x1.8dd5555555553p+3 0x1.27ce38e38e38ep+2 | 855 | 108 506 361
"""

#: Random walks as the kernel played them before: level, stones, potions, trials, agent, seed | nodes | trial
#: rewards | the actions of the agent's decisions
WALKS = """
rb 3 8 4 observer 0 | 1721 | 1 17 2 16 | 4 7 16 27 0 3 31 1 14 27 0 4 7 1 27 0 30 5 1 27 0
rb 2 9 3 observer 1 | 3445 | 16 0 16 | 16 23 15 1 14 0 18 0 2 1 14 0
nb 3 8 3 observer 2 | 636 | 1 1 31 | 28 30 3 1 0 5 14 0 5 1 14 27 0
rot 3 6 3 observer 3 | 297 | 16 0 1 | 6 1 27 0 31 0 31 27 0
fixed 3 10 2 observer 4 | 166 | 16 16 | 34 1 14 0 6 17 8 20 1 14 0
rb 3 12 3 oracle 5 | 126 | 16 17 2 | 2 22 36 14 27 0 16 39 1 14 27 0 4 22 39 18 36 1 27 0
rb 3 6 2 explorer 6 | 15416 | 16 1 | 17 5 16 15 1 27 0 20 32 27 0
rot 2 6 2 explorer 7 | 3401 | 1 0 | 16 17 15 18 14 0 20 15 6 0
"""


def _rows(table: str) -> list[list[list[str]]]:
    return [[field.split() for field in line.split("|")] for line in table.strip().splitlines()]


def _ints(field: list[str]) -> tuple[int, ...]:
    return tuple(int(x) for x in field)


@pytest.mark.parametrize("row", _rows(FIRST_TRIALS), ids=lambda row: " ".join(row[0] + row[1]))
def test_first_trial_states_as_before(row):
    """Trial starts of 3 stones and 5–7 potions (four levels and bonuses): bit-identical values and depths, the
    same actions, nodes and memo sizes as before."""
    (level, bonus), stones, (counts,), (order,), action, (value, depth), nodes, memo = row
    planner = Planner(_model(LEVELS[level]), bonus=float(bonus))
    planner.new_trial(list(_ints(stones)))
    decision = planner.best_action(_ints(stones), _ints(counts), _ints(order))
    assert decision == (_ints(action), _h(value), _h(depth))
    assert (planner.nodes,) == _ints(nodes) and _memo(planner) == _ints(memo)


@pytest.mark.parametrize("row", _rows(WALKS), ids=lambda row: " ".join(row[0]))
def test_random_walks_as_before(row):
    """Half random moves, half the agent's (up to 12 potions; the search oracle and the explorer too): the same
    decisions, nodes and rewards as before."""
    (level, stones, potions, trials, kind, seed), nodes, rewards, actions = row
    level = LEVELS[level]
    rs = np.random.RandomState(int(seed))
    game = AlchemyGame(num_trials=int(trials), num_stones_per_trial=int(stones), num_potions_per_trial=int(potions))
    game.start_episode(ChemistrySampler(LevelRules.from_level_name(level)).sample(rs), rs)
    agent = IdealObserver(level, minimise_world_states=kind == "explorer", oracle=kind == "oracle")
    agent.reset(game)
    ours = []
    while not game.episode_over:
        present = [s for s, x in enumerate(game.stones) if x >= 0]
        full = [q for q, x in enumerate(game.potions) if x >= 0]
        if rs.rand() < 0.5 and present and full:
            action = encode_action(int(rs.choice(present)), int(rs.choice(full)), game.end_trial_action)
            agent.follow(game, action)
            game.step(action)
            continue
        action = agent.act(game)
        ours.append(action)
        if action == _noop_or_end(game) and agent.ending_trial:
            game.end_trial()
        else:
            game.step(action)
    assert tuple(ours) == _ints(actions) and (agent.planner.nodes,) == _ints(nodes)
    assert tuple(game.trial_rewards) == _ints(rewards)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("episode", "rewards", "nodes"),
    [(1, [1, 31, 31, 15, 15, 1, 16, 17, 31, 17], 17635), (2, [31, 45, 17, 30, 45, 3, 45, 45, 30, 31], 721137)],
)
def test_whole_episodes_as_before(episode, rewards, nodes):
    """Whole evaluation episodes: the same trial rewards and nodes as before."""
    from alchemy_gym.agents.base import run_episode
    from alchemy_gym.data import evaluation_episodes

    eps = evaluation_episodes()
    game = AlchemyGame()
    game.start_episode(eps[episode].chemistry, items=eps[episode].trials)
    agent = IdealObserver()
    assert run_episode(agent, game, episode) == rewards
    assert agent.planner.nodes == nodes  # fmt: skip


# ---------------------------------------------------------------- named inputs


def _planner_at(stones: tuple[int, ...] | None = None) -> Planner:
    planner = Planner(_model())
    planner.new_trial(list(stones or (S((1, 1, 1), 1),)))
    return planner


def test_search_result_is_named():
    planner = _planner_at()
    kernel = io._search_ext.Kernel(tables=planner.kernel_tables())
    o = S((1, 1, 1), 1)
    request = SearchRequest(
        stones=(o,),
        potions=(1, 1, 0, 0, 0, 0),
        belief=planner.belief.to_bytes(planner._nbytes, "little"),
        touched=0,
        root=True,
        symmetric=True,
        colour_order=(0, 1, 2, 3, 4, 5),
    )
    result = kernel.search(request)
    assert result.action == planner.best_action((o,), (1, 1, 0, 0, 0, 0))[0]
    assert (result.value, result.depth, result.action, result.nodes) == tuple(result)
    assert result.nodes > 0 and isinstance(result.value, float)


def test_bad_inputs_are_named_in_the_error():
    """A table of the wrong type or shape, a missing attribute, a bad request: the error names the field."""
    import dataclasses

    planner = _planner_at()
    tables = planner.kernel_tables()
    Kernel = io._search_ext.Kernel
    with pytest.raises(ValueError, match=r"tables\.latent must be a C-contiguous int8 array of shape"):
        Kernel(dataclasses.replace(tables, latent=tables.latent.astype(np.int32)))
    with pytest.raises(ValueError, match=r"tables\.reach .*shape \(109, 8, 64, 8\)"):
        Kernel(dataclasses.replace(tables, reach=np.ascontiguousarray(tables.reach[:, :, :32])))
    with pytest.raises(TypeError, match=r"tables\.reach must be a C-contiguous integer array"):
        Kernel(dataclasses.replace(tables, reach=tables.reach[:, :, ::2]))
    with pytest.raises(ValueError, match=r"tables\.first"):
        Kernel(dataclasses.replace(tables, first=tables.first[:-8]))
    with pytest.raises(ValueError, match=r"tables\.graph: graph index out of range"):
        Kernel(dataclasses.replace(tables, graph=tables.graph + 200))
    with pytest.raises(ValueError, match=r"tables\.memo_bytes must be positive"):
        Kernel(dataclasses.replace(tables, memo_bytes=0))
    with pytest.raises(ValueError, match=r"tables\.symmetry\.stone_maps"):
        Kernel(dataclasses.replace(tables, symmetry=dataclasses.replace(tables.symmetry, stone_maps=np.zeros(3))))
    with pytest.raises(AttributeError, match="graph"):
        Kernel({"graph": tables.graph})  # a dict has no attributes: pass a KernelTables
    kernel = Kernel(tables)
    o = S((1, 1, 1), 1)
    good = SearchRequest(
        (o,), (1, 1, 0, 0, 0, 0), planner.belief.to_bytes(planner._nbytes, "little"), 0, True, True, tuple(range(6))
    )
    assert kernel.search(good).nodes > 0
    with pytest.raises(ValueError, match=r"request\.potions must hold six items"):
        kernel.search(dataclasses.replace(good, potions=(1, 1)))
    with pytest.raises(ValueError, match=r"request\.stones: 200 is out of range"):
        kernel.search(dataclasses.replace(good, stones=(200,)))
    with pytest.raises(ValueError, match=r"request\.belief is empty"):
        kernel.search(dataclasses.replace(good, belief=bytes(len(good.belief))))
    with pytest.raises(ValueError, match=r"request\.belief must be"):
        kernel.search(dataclasses.replace(good, belief=good.belief + b"\0"))
    nosym = Kernel(dataclasses.replace(tables, symmetry=None, bit_class=None))
    with pytest.raises(ValueError, match=r"request\.symmetric without symmetry tables"):
        nosym.search(good)
    assert nosym.search(dataclasses.replace(good, symmetric=False)).value == kernel.search(good).value


def test_kernel_tables_are_named_arrays():
    tables = _planner_at().kernel_tables()
    assert isinstance(tables, KernelTables)
    n = tables.graph.shape[0]
    assert tables.latent.shape == (n, 108) and tables.latent.dtype == np.int8
    assert tables.latent_potion.shape == (n, 6) and tables.obs.shape == (n, 8)
    assert tables.trans.shape == (109, 8, 6) and tables.reach.shape == (109, 8, 64, 8)
    assert len(tables.first) == (n + 63) // 64 * 8 and tables.bit_class.shape == (n,)


def test_planner_copies_without_the_kernel():
    """A copied (or pickled) planner drops the kernel and builds its own: the same decision."""
    o = S((1, 1, 1), 1)
    planner = _planner_at((o,))
    first = planner.best_action((o,), (1, 1, 1, 0, 0, 0))
    for other in (copy.deepcopy(planner), pickle.loads(pickle.dumps(planner))):
        assert other._kernel is None
        assert other.best_action((o,), (1, 1, 1, 0, 0, 0)) == first
        assert other._kernel is not None


# ---------------------------------------------------------------- the perfect-information table


def _plain_pi_value(trans: np.ndarray, stones: tuple[int, ...], counts: tuple[int, ...], bonus: float) -> float:
    """The trial's value with the chemistry known (one graph's ``trans[latent stone, latent potion type]``): the
    best of cashing now and of every (stone, potion) move. Plain recursion."""

    @functools.cache
    def value(stones: tuple[int, ...], counts: tuple[int, ...]) -> float:
        best = sum(3.0 + bonus if s == 7 else (1.0 if s in (3, 5, 6) else 0.0) for s in stones)
        for k in range(6):
            if counts[k]:
                rest = counts[:k] + (counts[k] - 1,) + counts[k + 1 :]
                for i, s in enumerate(stones):
                    moved = tuple(sorted(stones[:i] + (int(trans[s, k]),) + stones[i + 1 :]))
                    best = max(best, value(moved, rest))
        return best

    return value(tuple(sorted(stones)), tuple(counts))


def _code_value(code: int, bonus: float) -> float:
    return float(code & 15) + (3.0 + bonus) * float(code >> 4)


def test_pi_table_holds_the_plain_perfect_information_values():
    """The kernel's tabulated values (coded (stones worth 1) | (stones worth gold) << 4) are those of the plain
    game, on random states of every size the bound uses."""
    model = _model()
    assert model.latent_codes == (0, 0, 0, 1, 0, 1, 1, 16)  # latent stones 3, 5, 6 are worth 1, stone 7 gold
    table = io._search_ext.PiTable(
        trans=model.trans, codes=np.array(model.latent_codes, np.uint8), bonus=12.0, budget=1 << 30
    )
    rng = np.random.default_rng(5)
    codes = set()
    for _ in range(150):
        nst = int(rng.integers(1, 6))
        stones = tuple(int(x) for x in rng.integers(0, 8, nst))
        counts = tuple(int(x) for x in rng.multinomial(int(rng.integers(0, 9 if nst <= 3 else 6)), [1 / 6] * 6))
        g = int(rng.integers(len(model.graph_masks)))
        code = table.value(graph=g, stones=stones, counts=counts)
        assert _code_value(code, 12.0) == _plain_pi_value(model.trans[g], stones, counts, 12.0), (g, stones, counts)
        codes.add(code)
    assert len(codes) > 8  # the states reach many different values
    assert table.stats()["clears"] == 0 and table.stats()["bytes"] > 0


def test_pi_table_counts_and_shares_potions():
    """Latent stone 0 is (-1, -1, -1); latent potion types 1, 3, 5 move +x, +y, +z."""
    from alchemy_gym.core import graphs

    model = _model()
    table = model.pi_cache(12.0)
    full = next(g for g, mask in enumerate(model.graph_masks) if mask == graphs.FULL_GRAPH)
    assert table.value(full, (0,), (0, 1, 0, 1, 0, 1)) == 16  # three moves reach the gold corner
    assert table.value(full, (0,), (0, 1, 0, 1, 0, 0)) == 1  # two moves reach a +1 stone
    assert table.value(full, (0,), (1, 0, 1, 0, 1, 0)) == 0  # only the wrong directions
    assert table.value(full, (0, 0, 0), (0, 1, 0, 1, 0, 1)) == 16  # the three stones share the potions
    assert table.value(full, (0, 0), (0, 2, 0, 2, 0, 2)) == 32
    assert table.value(full, (0, 7), (1, 1, 0, 1, 0, 0)) == 17  # the gold stone is left alone
    # One potion of each positive type: the gold corner is reached iff some order of the three moves is a path.
    reached = 0
    for g in range(len(model.graph_masks)):
        t = model.trans[g]
        path = any(t[t[t[0, a], b], c] == 7 for a, b, c in itertools.permutations((1, 3, 5)))
        reached += path
        value = table.value(g, (0,), (0, 1, 0, 1, 0, 1))
        assert value == 16 if path else value in (0, 1)
    assert 0 < reached < len(model.graph_masks)


def test_pi_table_budget_and_bad_input(monkeypatch):
    """Over its byte budget the table drops its blocks (at the start of the next bound) and recomputes them:
    episode 1's first decision (about 16 MB of blocks) with a 14 MB budget is the default one, node for node."""
    model = _model()
    codes = np.array(model.latent_codes, np.uint8)
    PiTable = io._search_ext.PiTable
    small = PiTable(trans=model.trans, codes=codes, bonus=12.0, budget=14 << 20)
    monkeypatch.setitem(model._pi_caches, 12.0, small)  # the model's own table is back after the test
    decision, planner = _first_decision(1, model=model)
    assert small.stats()["clears"] >= 3
    assert (decision, planner.nodes) == FIRST_DECISIONS["episode 1"][:2]
    with pytest.raises(ValueError, match="at most 15 potions"):
        small.value(0, [0], [16, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="latent stone out of range"):
        small.value(0, [8], [1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"trans must be a C-contiguous int8 array of shape \(\*, 8, 6\)"):
        PiTable(trans=np.ascontiguousarray(model.trans[:, :, :5]), codes=codes, bonus=12.0, budget=1)
    with pytest.raises(ValueError, match="code must be 0, 1 or 16"):
        PiTable(trans=model.trans, codes=np.full(8, 2, np.uint8), bonus=12.0, budget=1)
    with pytest.raises(TypeError, match="needs trans=, codes=, bonus= and budget="):
        PiTable(trans=model.trans, codes=codes, bonus=12.0)
    monkeypatch.setitem(model._pi_caches, 12.0, PiTable(trans=model.trans, codes=codes, bonus=11.0, budget=1))
    with pytest.raises(ValueError, match="another world model or bonus"):
        _first_decision(1, model=model)


def test_no_potions_left_ends_the_trial():
    """A node without potions is worth cashing now, and its action is to end the trial."""
    o = S((1, 1, 1), 1)
    planner = _planner_at((o,))
    assert planner.best_action((o,), (0,) * 6) == (END, 1.0, 0.0)
