"""The ideal observer against dm_alchemy's ideal_observer_test (spec §9.2) and the published events (§7.2).

Every test of the agents runs the C search kernel (the plain reference search too where a state is small
enough); without the kernel they are skipped, except the tests of what happens without it.
"""

from __future__ import annotations

import numpy as np
import pytest

from alchemy_gym.agents import ideal_observer as io
from alchemy_gym.agents.base import run_episode
from alchemy_gym.agents.ideal_observer import END, IdealObserver, Planner, stone_obs, world_model
from alchemy_gym.core import graphs
from alchemy_gym.core.chemistry import FIXED_POTION_MAP, FIXED_STONE_MAP, Chemistry, LevelRules
from alchemy_gym.core.game import CAULDRON, AlchemyGame, TrialItems
from alchemy_gym.core.items import coords_to_index, potion_index

RANDOM_BOTTLENECK = "alchemy/perceptual_mapping_randomized_with_random_bottleneck"
needs_kernel = pytest.mark.skipif(not io.kernel_available(), reason="the C search kernel is not built (no compiler)")
FULL_CUBE = graphs.FULL_GRAPH
BOTTLENECK1 = graphs.constraint_to_graph(graphs.bottleneck1_constraints()[0])


def expected_reward(level: str, reward: int, potions: list[tuple[int, int]], backend: str = "c") -> float:
    """Value of one trial with one stone at aligned (1, 1, 1) of ``reward`` and perceived ``potions``, bonus 0."""
    planner = Planner(world_model(LevelRules.from_level_name(level)), bonus=0.0, backend=backend)
    o = stone_obs((1, 1, 1), reward)
    planner.new_trial([o])
    counts = [0] * 6
    for dim, direction in potions:
        counts[potion_index(dim, direction)] += 1
    _, value, _ = planner.best_action((o,), tuple(counts))
    return value


@pytest.mark.parametrize(
    ("reward", "potions", "level", "value"),
    [
        (3, [], RANDOM_BOTTLENECK, 3.0),
        (1, [], RANDOM_BOTTLENECK, 1.0),
        (-1, [], RANDOM_BOTTLENECK, 0.0),
        (3, [(0, 1)], RANDOM_BOTTLENECK, 3.0),
        (3, [(0, 1), (0, -1)], RANDOM_BOTTLENECK, 3.0),
        (1, [(0, 1), (0, -1)], "alchemy/perceptual_mapping_randomized", 4.0 / 3.0),
        (-1, [(0, 1), (1, 1)], "alchemy/perceptual_mapping_randomized", 0.583333),
    ],
)
@pytest.mark.parametrize("backend", [pytest.param("c", marks=needs_kernel), "reference"])
def test_expected_reward_matches_dm_alchemy(reward, potions, level, value, backend):
    """§9.2 test_expected_reward, with the kernel and with the plain reference search."""
    assert expected_reward(level, reward, potions, backend) == pytest.approx(value, abs=1e-4)


def _items(stones: list[list[tuple[int, int, int]]], potions: list[list[tuple[int, int]]]) -> list[TrialItems]:
    return [
        TrialItems(tuple(coords_to_index(c) for c in s), tuple(potion_index(d, r) for d, r in p))
        for s, p in zip(stones, potions)
    ]


def _play(items, graph, agent) -> AlchemyGame:
    game = AlchemyGame(num_trials=len(items))
    game.start_episode(Chemistry(FIXED_POTION_MAP, FIXED_STONE_MAP, graph, 0), items=items)
    run_episode(agent, game)
    return game


@needs_kernel
def test_uses_knowledge_from_the_first_trial():
    """§9.2 test_multiple_trials: [15, 15]."""
    items = _items([[(-1, -1, -1)], [(1, 1, -1)]], [[(0, 1), (1, 1), (2, 1)], [(0, -1), (1, -1), (2, 1)]])
    game = _play(items, FULL_CUBE, IdealObserver(RANDOM_BOTTLENECK))
    assert game.trial_rewards == [15.0, 15.0]


@needs_kernel
def test_second_trial_without_the_right_potion():
    """§9.2 test_multiple_trials: [15, 1]."""
    items = _items([[(-1, -1, -1)], [(1, -1, 1)]], [[(0, 1), (1, 1), (2, 1)], [(0, -1), (1, -1), (2, 1)]])
    game = _play(items, FULL_CUBE, IdealObserver(RANDOM_BOTTLENECK))
    assert game.trial_rewards == [15.0, 1.0]


@needs_kernel
def test_ten_trials():
    """§9.2 test_multiple_trials: the 10-trial case [0, 0, 0, 15, 15, 15, 1, 1, 1, 1]."""
    stones = [
        [(-1, -1, -1)],
        [(1, -1, 1)],
        [(-1, -1, -1)],
        [(1, 1, 1)],
        [(1, 1, -1)],
        [(1, 1, -1)],
        [(1, -1, -1)],
        [(1, -1, -1)],
        [(1, -1, -1)],
        [(-1, -1, 1)],
    ]
    potions = [
        [(0, -1), (1, -1), (0, 1), (2, -1), (0, 1), (0, -1)],
        [(0, 1), (0, -1), (0, -1), (0, -1), (0, 1), (2, -1)],
        [(0, -1), (1, 1), (2, -1), (1, -1), (2, -1), (2, -1)],
        [(1, -1), (0, -1), (1, -1), (1, -1), (0, -1), (0, -1)],
        [(1, 1), (0, -1), (1, -1), (2, 1), (1, 1), (0, -1)],
        [(2, -1), (1, 1), (2, 1), (0, -1), (0, -1), (0, 1)],
        [(0, 1), (0, 1), (0, -1), (2, -1), (2, -1), (1, 1)],
        [(2, -1), (1, 1), (1, -1), (0, 1), (2, -1), (2, -1)],
        [(2, 1), (2, -1), (2, -1), (2, 1), (1, -1), (1, -1)],
        [(1, -1), (0, -1), (2, 1), (2, 1), (2, -1), (1, 1)],
    ]
    game = _play(_items(stones, potions), FULL_CUBE, IdealObserver(RANDOM_BOTTLENECK))
    assert game.trial_rewards == [0, 0, 0, 15, 15, 15, 1, 1, 1, 1]


@needs_kernel
def test_oracle_takes_the_long_path():
    """§9.2: bottleneck1, the oracle needs the long path to the best stone: [16]."""
    items = _items([[(-1, -1, -1), (1, 1, -1)]], [[(0, 1), (1, 1), (2, 1)]])
    game = _play(items, BOTTLENECK1, IdealObserver("alchemy/all_fixed_bottleneck1"))
    assert game.trial_rewards == [16.0]


@needs_kernel
def test_oracle_prefers_the_short_path_among_equal_rewards():
    """§9.2: [1]; stone 1 → potion 1, then stone 1 → cauldron; stone 0 and potions 0, 2 untouched."""
    items = _items([[(-1, -1, -1), (-1, -1, 1)]], [[(0, -1), (0, 1), (2, 1)]])
    game = _play(items, BOTTLENECK1, IdealObserver("alchemy/all_fixed_bottleneck1"))
    assert game.trial_rewards == [1.0]
    events = game.matrix_events[0]
    assert (events[0] == -1).all()
    assert events[1, 1] == 0 and events[1, CAULDRON] == 1
    assert events[1, 0] == -1 and events[1, 2] == -1


@needs_kernel
@pytest.mark.parametrize("explorer", [False, True])
def test_ideal_explorer_uses_the_potion_to_learn(explorer):
    """§9.2: with nothing to gain the observer leaves the potion; the explorer uses it to learn."""
    items = _items([[(-1, -1, -1)]], [[(0, 1)]])
    agent = IdealObserver(RANDOM_BOTTLENECK, minimise_world_states=explorer)
    game = _play(items, BOTTLENECK1, agent)
    assert game.trial_rewards == [0.0]
    assert (game.matrix_events[0, 0, 0] == 0) == explorer


@needs_kernel
def test_search_oracle_knows_the_chemistry():
    """The search oracle's prior is the single true chemistry: one world state."""
    items = _items([[(-1, -1, -1)]], [[(0, 1), (1, 1), (2, 1)]])
    agent = IdealObserver(RANDOM_BOTTLENECK, oracle=True)
    game = _play(items, FULL_CUBE, agent)
    assert agent.planner.model.size == 1
    assert game.trial_rewards == [15.0]


@needs_kernel
def test_end_trial_first_on_ties():
    """With the best stone and no way to improve, the observer ends the trial at once."""
    planner = Planner(world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK)))
    o = stone_obs((1, 1, 1), 3)
    planner.new_trial([o])
    action, value, depth = planner.best_action((o,), (1, 1, 0, 0, 0, 0))
    assert action == END and value == 15.0 and depth == 0.0


def test_rejects_impossible_stones():
    planner = Planner(world_model(LevelRules.from_level_name("alchemy/all_fixed")), backend="reference")
    with pytest.raises(RuntimeError, match="impossible"):
        planner.new_trial([stone_obs((1, 1, 1), -3)])


def test_belief_shrinks_with_observations():
    """After a stone moves, only world states that explain the move remain."""
    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    planner = Planner(model, backend="reference")  # the belief is the planner's, whatever the backend
    o = stone_obs((-1, -1, -1), -3)
    planner.new_trial([o])
    before = planner.num_world_states()
    planner.observe(o, 1, stone_obs((1, -1, -1), -1))
    after = planner.num_world_states()
    assert 0 < after < before
    assert np.isclose(before, 48 * 109)  # stone map known from the -3 stone


@needs_kernel
def test_rotation_level_small_trials():
    """On the standard (rotation) level the observer resolves the rotation from the stones it sees; it scores
    between cashing at once and the search oracle (2 stones, 5 potions, 4 trials, 20 seeded episodes)."""
    from alchemy_gym.agents.bots import PositiveStonesBot
    from alchemy_gym.core.chemistry import ChemistrySampler

    level = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"
    sampler = ChemistrySampler(LevelRules.from_level_name(level))
    totals = []
    for agent in (PositiveStonesBot(), IdealObserver(level), IdealObserver(level, oracle=True)):
        total = 0.0
        for i in range(20):
            rs = np.random.RandomState(i)
            game = AlchemyGame(num_trials=4, num_stones_per_trial=2, num_potions_per_trial=5)
            game.start_episode(sampler.sample(rs), rs)
            total += sum(run_episode(agent, game, i))
        totals.append(total / 20)
    assert totals[0] < totals[1] <= totals[2]


@needs_kernel
def test_ideal_observer_through_the_gymnasium_env():
    import gymnasium as gym

    from alchemy_gym.agents import run_env_episode

    env = gym.make("Alchemy/SymbolicAllFixed-v0", end_trial_action=True)
    rewards = run_env_episode(IdealObserver("alchemy/all_fixed"), env, seed=3)
    game = AlchemyGame(end_trial_action=True)
    rs = np.random.RandomState(3)
    from alchemy_gym.core.chemistry import ChemistrySampler

    game.start_episode(ChemistrySampler(LevelRules.from_level_name("alchemy/all_fixed")).sample(rs), rs)
    assert rewards == run_episode(IdealObserver("alchemy/all_fixed"), game)


def _replay_trial(agent: IdealObserver, game: AlchemyGame, matrix: np.ndarray) -> None:
    from alchemy_gym.core.game import encode_action
    from alchemy_gym.data import events_to_actions

    trial = game.trial_number
    for stone, potion in events_to_actions(matrix):
        action = encode_action(stone, potion, False)
        agent.follow(game, action)
        game.step(action)
    if game.trial_number == trial:
        game.end_trial()


@needs_kernel
def test_reproduces_published_trials_from_the_published_history():
    """§7.2: given the published history of earlier trials, the observer plays trials 1..9 of evaluation
    episodes 0..2 with the published rewards (episode 0: 1, 16, 31, 3, 30, 45, 17, 2, 45, 17 = 207) and the
    published matrix events in most trials (the rest are ties in expected reward, see the benchmark)."""
    import alchemy_gym
    from alchemy_gym.data import evaluation_episodes, load_agent_events

    episodes, published = evaluation_episodes(), load_agent_events("ideal_observer")
    published_rewards = alchemy_gym.replay_agent_events("ideal_observer", episodes=range(3))
    identical = 0
    for i in range(3):
        expected = []
        for t in range(1, 10):
            game = AlchemyGame()
            game.start_episode(episodes[i].chemistry, items=episodes[i].trials)
            agent = IdealObserver()
            agent.reset(game, i)
            for u in range(t):
                _replay_trial(agent, game, published[i, u])
            while game.trial_number == t:
                action = agent.act(game)
                if action == 0 and agent.ending_trial:
                    game.end_trial()
                else:
                    game.step(action)
            expected.append(game.trial_rewards[t])
            identical += bool((game.matrix_events[t] == published[i, t]).all())
        assert expected == published_rewards[i, 1:].tolist()
        if i == 0:
            assert expected == [16, 31, 3, 30, 45, 17, 2, 45, 17]
    assert identical >= 22  # of 27


@needs_kernel
def test_symmetry_keys_keep_values_and_decisions():
    """Merging nodes related by a symmetry of the prior (stone cube × colour relabelling) changes nothing: the
    first-trial values and actions equal those of the belief-keyed search (3 stones, 6 potions)."""
    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    assert model.symmetries() is not None
    assert world_model(LevelRules.from_level_name("alchemy/all_fixed")).symmetries() is None
    stones = (stone_obs((-1, -1, 1), -1), stone_obs((1, 1, -1), 1), stone_obs((-1, -1, 1), -1))
    for potions in [(1, 1, 1, 1, 1, 1), (0, 3, 2, 0, 0, 1)]:
        results = []
        for sym in (True, False):
            planner = Planner(model)
            planner.new_trial(list(stones))
            planner.sym_mode = sym
            values = planner.action_values(stones, potions)
            results.append((planner.best_action(stones, potions), values))
        (a1, v1, d1), vals1 = results[0]
        (a2, v2, d2), vals2 = results[1]
        assert a1 == a2 and v1 == pytest.approx(v2, abs=1e-9) and d1 == pytest.approx(d2, abs=1e-9)
        assert vals1.keys() == vals2.keys()
        for k in vals1:
            assert vals1[k] == pytest.approx(vals2[k], abs=1e-9)


def test_symmetry_class_permutations_map_observations():
    """Each stone-cube symmetry and colour relabelling permutes the world-state classes so that observations
    follow: the image world state turns the relabelled stone in the relabelled colour into the relabelled
    result (checked on random world states, every possible stone and colour)."""
    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    sym = model.symmetries()
    cls, sperm, cperm = sym.world_class, sym.stone_class_perm, sym.colour_class_perm
    first_of_class = np.full(cls.max() + 1, -1)
    first_of_class[cls[::-1]] = np.arange(model.size)[::-1]
    possible = np.flatnonzero((model.latent >= 0).any(axis=0))
    rs = np.random.RandomState(0)
    worlds = rs.choice(model.size, 40, replace=False)
    for g, h in [(5, 0), (0, 7), (17, 20), (40, 47), (24, 33)]:
        smap, cmap = sym.stone_maps[g], sym.colour_maps[h]
        images = first_of_class[cperm[h][sperm[g][cls[worlds]]]]
        relabel = np.append(smap, -1)
        for o in possible:
            for p in range(6):
                before = model.outcomes(worlds, int(o), p)
                after = model.outcomes(images, int(smap[o]), int(cmap[p]))
                assert (after == relabel[before]).all()
    # the identity
    assert (sperm[0] == np.arange(sperm.shape[1])).all() and (cperm[0] == np.arange(cperm.shape[1])).all()


@needs_kernel
def test_symmetric_nodes_share_a_memo_entry():
    """Two nodes that a symmetry maps onto each other (stones, potion counts and belief), after an informative
    observation too, share the kernel's memo entry: the image is answered without a node searched, with the
    same value; a belief that is no image of it is searched."""
    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    sym = model.symmetries()
    cls, sperm, cperm = sym.world_class, sym.stone_class_perm, sym.colour_class_perm
    stones = (stone_obs((1, 1, 1), 3), stone_obs((-1, 1, 1), 1))
    g = next(g for g in range(1, 48) if all(sym.stone_maps[g][x] == x for x in stones))  # fixes the stones seen
    planner = Planner(model)
    planner.new_trial(list(stones))
    full = planner.belief
    planner.observe(stones[0], 1, planner._outcomes(stones[0], 1)[-1][0])
    index, bits = planner.frame.index, planner.belief
    assert 0 < bits.bit_count() < full.bit_count()
    member = np.array([(bits >> b) & 1 for b in range(index.size)], dtype=bool)
    potions = (2, 1, 0, 1, 1, 1)
    value, depth, _ = planner._search(stones, potions, bits, planner.touched)
    assert planner.nodes > 0
    for h in (0, 3, 9, 40):
        image_potions = [0] * 6
        for p in range(6):
            image_potions[sym.colour_maps[h][p]] = potions[p]
        # the image belief: the frame bits whose world state's class is the image of a class of the belief
        image_classes = set(cperm[h][sperm[g][cls[index[member]]]].tolist())
        image = sum(1 << b for b in range(index.size) if cls[index[b]] in image_classes)
        assert image.bit_count() == bits.bit_count()
        nodes = planner.nodes
        assert planner._search(stones, tuple(image_potions), image, 0b111)[:2] == (value, depth)
        assert planner.nodes == nodes  # answered from the memo
    nodes = planner.nodes
    planner._search(stones, potions, full, 0)
    assert planner.nodes > nodes


@needs_kernel
def test_perfect_information_bound_prunes_but_changes_no_decision():
    """Episode 1's first decision with and without the bound: the same action, value and expected potions
    (bit-identical), fewer nodes with it; at the root the bound (Σ over world states of prior weight × the
    value with the world state known, from the kernel's table) lies between the value and the most a trial
    can pay."""
    from alchemy_gym.core.items import NUM_POTION_TYPES
    from alchemy_gym.data import evaluation_episodes

    eps = evaluation_episodes()
    out = []
    for pi in (True, False):
        game = AlchemyGame()
        game.start_episode(eps[1].chemistry, items=eps[1].trials)
        agent = IdealObserver()
        agent.reset(game, 1)
        planner = agent.planner
        planner.pi_bound = pi
        counts = tuple(sum(1 for q in agent._sync(game)[1] if q == p) for p in range(6))
        stones = tuple(agent._stone_order)
        out.append((planner.best_action(stones, counts, agent._colour_order), planner.nodes))
    assert out[0][0] == out[1][0]
    assert out[0][1] < out[1][1]
    model, frame = planner.model, planner.frame
    table = model.pi_cache(planner.bonus)
    bits = np.flatnonzero([(planner.belief & frame.first) >> b & 1 for b in range(frame.index.size)])
    copies = np.diff(np.append(bits, frame.index.size))
    bound = 0.0
    for b, k in zip(bits.tolist(), copies.tolist()):
        w = frame.index[b]
        latent = [int(model.latent[w, o]) for o in stones]
        lcounts = [0] * NUM_POTION_TYPES
        for p in range(NUM_POTION_TYPES):
            lcounts[model.latent_potion[w, p]] += counts[p]
        code = table.value(int(model.graph[w]), latent, lcounts)
        bound += k * ((code & 15) + (3.0 + planner.bonus) * (code >> 4))
    bound /= planner.weight(planner.belief)
    assert out[0][0][1] <= bound <= 3 * (3.0 + planner.bonus)


@needs_kernel
def test_world_model_copies_leave_the_caches_behind():
    """A pickled world model (sent to a worker) carries no perfect-information table; the copy makes its own
    and finds the same values."""
    import pickle

    model = world_model(LevelRules.from_level_name(RANDOM_BOTTLENECK))
    table = model.pi_cache(12.0)
    assert model.pi_cache(12.0) is table
    value = table.value(0, (0, 3), (1, 2, 0, 1, 2, 1))
    copy = pickle.loads(pickle.dumps(model))
    assert copy._pi_caches == {}
    assert copy.pi_cache(12.0) is not table and copy.pi_cache(12.0).value(0, (0, 3), (1, 2, 0, 1, 2, 1)) == value


# ------------------------------------------------------------------ without the compiled kernel


@pytest.fixture
def no_kernel(monkeypatch):
    """As if the extension alchemy_gym.agents._search had not been built."""
    monkeypatch.setattr(io, "_search_ext", None)


def test_without_the_kernel_the_agents_say_how_to_get_it(no_kernel):
    from alchemy_gym.agents import make_agent

    assert not io.kernel_available()
    for build in (
        lambda: IdealObserver(),
        lambda: io.ideal_explorer(),
        lambda: io.search_oracle(),
        lambda: make_agent("ideal-observer"),
        lambda: Planner(world_model(LevelRules.from_level_name("alchemy/all_fixed"))),
    ):
        with pytest.raises(io.KernelMissingError, match=r"alchemy_gym\.agents\._search") as err:
            build()
        assert "C compiler" in str(err.value) and "pip install --force-reinstall --no-binary alchemy-gym" in str(
            err.value
        )
        assert isinstance(err.value, ImportError)
    # everything else still works, and the plain reference search can be chosen explicitly
    items = _items([[(-1, -1, -1)]], [[(0, 1), (1, 1), (2, 1)]])
    assert _play(items, FULL_CUBE, make_agent("positive")).trial_rewards == [0.0]
    game = _play(items, FULL_CUBE, IdealObserver("alchemy/all_fixed", backend="reference"))
    assert game.trial_rewards == [15.0]


def test_evaluate_without_the_kernel_is_a_usage_error(no_kernel, capsys):
    """``alchemy-gym evaluate --agent ideal-observer`` stops before any work, saying how to get the kernel."""
    from alchemy_gym.evaluation import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--agent", "ideal-observer", "--level", "alchemy/all_fixed", "--episodes", "1"])
    assert exit_info.value.code == 2
    assert "needs its compiled search kernel" in capsys.readouterr().err


def test_the_backend_is_an_argument():
    with pytest.raises(ValueError, match="backend must be one of 'c', 'reference'"):
        IdealObserver(backend="python")
    with pytest.raises(ValueError, match="backend must be one of"):
        Planner(world_model(LevelRules.from_level_name("alchemy/all_fixed")), backend="numpy")
    assert IdealObserver(backend="reference").backend == "reference"


def test_the_package_imports_without_the_extension():
    """In a fresh interpreter where importing alchemy_gym.agents._search fails: the package, the envs and the
    bots work; the ideal observer raises KernelMissingError."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["alchemy_gym.agents._search"] = None  # import fails as if it had not been built
import gymnasium as gym
import alchemy_gym
from alchemy_gym.agents import make_agent, run_env_episode
from alchemy_gym.agents import ideal_observer as io
assert io._search_ext is None and not io.kernel_available()
env = gym.make("Alchemy/SymbolicAllFixed-v0")
assert len(run_env_episode(make_agent("positive"), env, seed=0)) == 10
try:
    make_agent("search-oracle")
except io.KernelMissingError as e:
    print("raised:", e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "raised: the ideal observer needs its compiled search kernel" in out.stdout


@needs_kernel
@pytest.mark.parametrize("episode", [1, 5, 7])
def test_published_first_trial_decisions_are_ours_or_ties(episode):
    """Along dm_alchemy's published ideal_observer events of trial 0 (nothing known yet), each published decision
    is ours or ties with ours in expected reward (within 1e-9): never better (a search error on our side), never
    worse. Where they tie, ours never expects more potions (the spec's secondary objective)."""
    from alchemy_gym.agents.ideal_observer import follow_trial
    from alchemy_gym.data import evaluation_episodes, events_to_actions, load_agent_events

    eps, published = evaluation_episodes(), load_agent_events("ideal_observer")
    game = AlchemyGame()
    game.start_episode(eps[episode].chemistry, items=eps[episode].trials)
    agent = IdealObserver()
    agent.reset(game, episode)
    decisions = follow_trial(agent, game, events_to_actions(published[episode, 0]))
    assert decisions[-1].theirs == END
    same = sum(d.their_value is None for d in decisions)
    differ = len(decisions) - same
    for d in decisions:
        if d.their_value is not None:
            their_value, their_depth = d.their_value
            assert d.theirs != d.ours
            assert their_value == pytest.approx(d.value, rel=1e-9, abs=1e-9)
            assert their_depth >= d.potions - 1e-9
    assert same >= 3 and differ >= 1  # these episodes' published first trials do contain ties
