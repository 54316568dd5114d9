"""The game's description (alchemy_gym.core.spec): its values, and every kernel reading it by name and refusing one
it does not fit; the batch's state read-only to the outside; one thread cap."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import types
from pathlib import Path

import numpy as np
import pytest

from alchemy_gym.core.batch import (
    MAX_THREADS,
    STATE_ARRAYS,
    BatchState,
    GameBatch,
    GameConfig,
    NumpyKernel,
    kernel_settings,
)
from alchemy_gym.core.chemistry import Chemistry
from alchemy_gym.core.episodes import EpisodeSource, TrialItems
from alchemy_gym.core.spec import SPEC, SPEC_VERSION

try:
    from alchemy_gym.core import _kernel

    HAVE_KERNEL = True
except ImportError:
    HAVE_KERNEL = False

needs_kernel = pytest.mark.skipif(not HAVE_KERNEL, reason="C kernel not built")
BACKENDS = ["numpy", pytest.param("c", marks=needs_kernel)]
STANDARD = "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck"


# ------------------------------------------------------------------------------- the description


def test_the_description_holds_the_tasks_constants():
    """§4.2: 3 stone slots, 12 potion slots, 40 actions (41 with the end-trial action); §4.4: 39 floats (24)."""
    assert (SPEC.max_stones, SPEC.max_potions, SPEC.stone_block, SPEC.item_slots) == (3, 12, 13, 15)
    assert (SPEC.num_actions(False), SPEC.num_actions(True)) == (40, 41)
    assert (SPEC.observation_size(True), SPEC.observation_size(False)) == (39, 24)
    assert (SPEC.num_latent_stones, SPEC.num_potion_types, SPEC.num_stone_maps, SPEC.num_potion_maps) == (8, 6, 8, 48)
    assert SPEC.chem_layout == ("potion_map", "stone_map", "graph", "rotation")
    assert [SPEC.chem_column(p) for p in SPEC.chem_layout] == [0, 1, 2, 3] == [
        SPEC.chem_potion_map, SPEC.chem_stone_map, SPEC.chem_graph, SPEC.chem_rotation
    ]  # fmt: skip
    assert SPEC.stone_default.tolist() == [2, 2, 2, 2, 1] and SPEC.potion_default.tolist() == [1, 1]
    assert SPEC.transitions.shape == (4096, 48) and SPEC.stone_features.shape == (8, 4, 8, 4)
    assert SPEC.describe()["version"] == SPEC_VERSION and "transitions" not in SPEC.describe()


@pytest.mark.parametrize("end_trial_action", [False, True])
def test_the_action_table_is_the_decoding_of_section_4_2(end_trial_action):
    """a = action - k: -2 ends the trial, -1 does nothing, else stone a // 13 into the cauldron (a % 13 == 0) or
    into potion slot a % 13 - 1."""
    k = 2 if end_trial_action else 1
    table = SPEC.action_table(end_trial_action)
    for action in range(SPEC.num_actions(end_trial_action)):
        a = action - k
        if a < 0:
            want = (0, a)
        else:
            want = (a // 13, 12 if a % 13 == 0 else a % 13 - 1)
        assert (int(table.stone[action]), int(table.column[action])) == want
    assert SPEC.no_op_action(end_trial_action) == k - 1


def test_the_descriptions_tables_are_read_only():
    tables = [v for v in vars(SPEC).values() if isinstance(v, np.ndarray)]
    tables += list(SPEC.action_table(True))
    assert len(tables) >= 11
    for table in tables:
        with pytest.raises(ValueError, match="read-only"):
            table.reshape(-1)[0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPEC.max_stones = 4


# ------------------------------------------------------------------- kernels read it by name


def test_the_kernels_headers_are_generated_from_the_descriptions():
    """The compiled kernels take the game's numbers from headers generated from the descriptions (no number is
    typed in their C); after a change of the description, ``python scripts/headers.py`` writes them again."""
    import alchemy_gym
    from alchemy_gym.core.spec import header

    package = Path(alchemy_gym.__file__).parent
    assert (package / "core" / "_spec.h").read_text() == header(), "run: python scripts/headers.py (then rebuild)"
    assert "#define SPEC_STONE_BLOCK (13)" in header() and "#define SPEC_CHEM_GRAPH (2)" in header()
    io = pytest.importorskip("alchemy_gym.agents.ideal_observer")
    search = (package / "agents" / "_search_spec.h").read_text()
    assert search == io.search_header(), "run: python scripts/headers.py (then rebuild)"
    assert "#define SEARCH_NUM_PERCEIVED_STONES (108)" in search and "PI_" not in search


def _kernel_parts(spec=SPEC, n: int = 2, **settings):
    config = GameConfig()
    state = BatchState(n, config)
    base = kernel_settings(config, EpisodeSource.sampled(STANDARD), n)
    return state, spec, base._replace(**settings)


def _changed(**fields):
    return dataclasses.replace(SPEC, **fields)


@needs_kernel
@pytest.mark.parametrize(
    ("spec", "settings", "match"),
    [
        (_changed(version=SPEC_VERSION + 1), {}, rf"spec\.version is {SPEC_VERSION + 1}, this kernel reads version"),
        (_changed(stone_block=14), {}, r"spec\.stone_block is 14, this kernel is compiled for 13: the game descr"),
        (_changed(item_slots=16), {}, r"spec\.item_slots is 16, this kernel is compiled for 15"),
        (_changed(cauldron=11), {}, r"spec\.cauldron is 11, this kernel is compiled for 12"),
        (_changed(chem_graph=0), {}, r"spec\.chem_graph is 0, this kernel is compiled for 2"),
        (_changed(fixed_potion_map=47), {}, r"spec\.fixed_potion_map is 47, this kernel is compiled for 7"),
        (_changed(transitions=SPEC.transitions[:100]), {}, r"spec\.transitions has the wrong dtype or size"),
        (_changed(potion_features=SPEC.potion_features.astype(np.float64)), {}, r"spec\.potion_features has the wrong"),
        (_changed(stone_default=SPEC.stone_default[:4]), {}, r"spec\.stone_default has the wrong dtype or size"),
        (_changed(transitions=np.full((4096, 48), 8, np.int8)), {}, r"an entry of spec\.transitions"),
        (SPEC, {"action_stone": np.zeros(39, np.int8)}, r"settings\.action_stone has the wrong dtype or size"),
        (SPEC, {"action_column": np.full(40, 13, np.int8)}, r"an entry of settings\.action_column"),
        (SPEC, {"values": np.zeros(7)}, r"settings\.values has the wrong dtype or size"),
        (SPEC, {"source": "bogus"}, r"settings\.source must be 'none', 'sampled' or 'fixed'"),
        (SPEC, {"max_threads": 0}, r"settings\.max_threads = 0 does not fit this kernel"),
    ],
)
def test_the_game_kernel_refuses_a_description_it_does_not_fit(spec, settings, match):
    with pytest.raises(ValueError, match=match):
        _kernel.Kernel(*_kernel_parts(spec, **settings))


@needs_kernel
def test_the_game_kernel_reads_named_inputs_only():
    state, spec, settings = _kernel_parts()
    with pytest.raises(AttributeError, match="max_stones"):  # the first size it reads, by name
        _kernel.Kernel(state, types.SimpleNamespace(version=SPEC_VERSION), settings)
    with pytest.raises(TypeError, match="writable"):
        frozen = BatchState(2, GameConfig())
        frozen.obs.flags.writeable = False
        _kernel.Kernel(frozen, spec, settings)
    assert _kernel.Kernel(state=state, spec=spec, settings=settings).name == "c"


def test_both_kernels_take_what_an_empty_slot_shows_from_the_description():
    """A description with other empty-slot values: the numpy kernel and the C kernel both show them, so neither
    has the values written in (no literal), and both agree on every array."""
    spec = _changed(stone_default=np.array([7, 6, 5, 4, 3], np.float32), potion_default=np.array([9, 8], np.float32))
    kernels = [NumpyKernel] + ([_kernel.Kernel] if HAVE_KERNEL else [])
    states = []
    for make in kernels:
        state, _, settings = _kernel_parts(spec, n=1)
        kernel = make(state, spec, settings)
        state.chem[0] = (5, 3, 4095, 1)
        state.items[0, :] = -1
        state.items[0, :, :2] = [1, 6]  # two stones, no third; one potion, in slot 0
        state.items[0, :, SPEC.max_stones] = 2
        state.episode[0] = SPEC.given
        kernel.begin(np.array([0], dtype=np.intp), np.array([SPEC.given], dtype=np.int32))
        assert state.obs[0, 10:15].tolist() == [7, 6, 5, 4, 3]  # stone slot 2 is empty
        assert state.obs[0, 17:19].tolist() == [9, 8]  # potion slot 1 is empty
        kernel.step_one(0, 1)  # stone 0 into the cauldron
        assert state.obs[0, 0:5].tolist() == [7, 6, 5, 4, 3]
        states.append(state)
    for name in STATE_ARRAYS:
        for other in states[1:]:
            np.testing.assert_array_equal(getattr(states[0], name), getattr(other, name), err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_applied_actions_outcome_is_the_same_on_both_backends(backend):
    """apply_one's outcome on every action of a given trial (the no-op and the end-trial action included)."""
    config = GameConfig(end_trial_action=True)
    chemistry = Chemistry(5, 3, 4095, 1)
    trials = [TrialItems((1, 6, 0), (2, 3, 0, 5, 1, 4, 2, 3, 0, 5, 1, 4))] * config.num_trials
    outcomes = []
    for action in range(config.num_actions):
        batch = GameBatch(1, config, backend=backend)
        batch.begin_given(0, chemistry, trials)
        outcomes.append(tuple(batch.apply_one(0, action)))
    reference = []
    for action in range(config.num_actions):
        batch = GameBatch(1, config, backend="numpy")
        batch.begin_given(0, chemistry, trials)
        reference.append(tuple(batch.apply_one(0, action)))
    assert outcomes == reference
    assert outcomes[0][1:4] == (SPEC.nothing, 0, -1) and outcomes[1][1:4] == (SPEC.nothing, 0, -1)
    assert outcomes[2][1] == SPEC.stone_cashed and outcomes[3][1] == SPEC.potion_used


# ------------------------------------------------------------------------ the state, read-only


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_arrays_a_kernel_keeps_are_read_only_to_the_outside(backend):
    batch = GameBatch(3, GameConfig(), EpisodeSource.sampled(STANDARD), backend=backend)
    batch.reset(None, [1, 2, 3])
    for name in STATE_ARRAYS:
        with pytest.raises(AttributeError, match=rf"GameBatch\.{name} is read-only: the game kernel keeps"):
            setattr(batch, name, np.zeros_like(getattr(batch, name)))
        with pytest.raises(ValueError, match="read-only"):
            getattr(batch, name)[0] = 0
    with pytest.raises(ValueError, match="read-only"):
        batch.values[0] = 100.0
    source = EpisodeSource.sampled(STANDARD)
    with pytest.raises(ValueError, match="read-only"):
        source.graph_cdf[0] = 0.0
    before = batch.obs.copy()
    batch.step(np.full(3, 1, dtype=np.int64))  # the views follow the kernel's writes
    assert not np.array_equal(before, batch.obs)
    assert np.shares_memory(batch.obs, batch._state.obs)


def test_later_trials_of_a_given_episode_take_their_items_through_the_batch():
    batch = GameBatch(1, GameConfig(num_trials=3))
    items = TrialItems((1,), (2,))
    batch.begin_given(0, Chemistry(0, 0, 4095), [items] * 3)
    batch.set_items(0, 2, TrialItems((7, 7), ()))
    assert batch.items[0, 2, :3].tolist() == [7, 7, -1]
    with pytest.raises(ValueError, match="not a later trial of a given episode"):
        batch.set_items(0, 0, items)


# ---------------------------------------------------------------------------------- threads


def test_threads_are_set_through_the_batch_within_one_cap():
    batch = GameBatch(4, backend="numpy")
    assert batch.threads == 1
    with pytest.raises(ValueError, match=r"threads > 1 needs the compiled kernel"):
        batch.threads = 2
    for bad in (0, MAX_THREADS + 1):
        with pytest.raises(ValueError, match=rf"threads={bad} out of range: allowed 1\.\.{MAX_THREADS}"):
            batch.threads = bad
    with pytest.raises(TypeError, match="threads must be an int"):
        batch.threads = 2.0


@needs_kernel
def test_threads_of_the_compiled_kernel_survive_copies():
    batch = GameBatch(4, backend="c")
    batch.threads = MAX_THREADS
    assert batch.threads == MAX_THREADS
    assert copy.deepcopy(batch).threads == MAX_THREADS
    assert pickle.loads(pickle.dumps(batch)).threads == MAX_THREADS
    with pytest.raises(ValueError, match=rf"threads must be in 1\.\.{MAX_THREADS}"):
        batch._kernel.threads = MAX_THREADS + 1


def test_the_vector_env_takes_the_same_cap():
    import gymnasium as gym

    import alchemy_gym  # noqa: F401

    with pytest.raises(ValueError, match=rf"num_threads must be an int in 1\.\.{MAX_THREADS}"):
        gym.make_vec("Alchemy/SymbolicStandard-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     num_threads=MAX_THREADS + 1)  # fmt: skip


# ------------------------------------------------------------------------------ the search kernel


def test_the_search_kernel_refuses_another_shape_by_name():
    io = pytest.importorskip("alchemy_gym.agents.ideal_observer")
    if not io.kernel_available():
        pytest.skip("the C search kernel is not built")
    model = io.world_model(
        io.LevelRules.from_level_name("alchemy/perceptual_mapping_randomized_with_random_bottleneck")
    )
    planner = io.Planner(model)
    planner.new_trial([io.stone_obs((1, 1, 1), 1)])
    tables = planner.kernel_tables()
    for name, value in (("num_potion_types", 7), ("num_symmetries", 24), ("reward_levels", 5), ("max_path", 8)):
        bad = dataclasses.replace(tables, spec=dataclasses.replace(io.SEARCH_SPEC, **{name: value}))
        with pytest.raises(ValueError, match=rf"tables\.spec\.{name} is {value}, the search kernel is compiled for"):
            io._search_ext.Kernel(bad)
    lazy_over_eager = dataclasses.replace(io.SEARCH_SPEC, pi_lazy=9, pi_eager=8)
    with pytest.raises(ValueError, match="pi_lazy <= pi_eager"):
        io._search_ext.Kernel(dataclasses.replace(tables, spec=lazy_over_eager))
    codes = np.array(model.latent_codes, np.uint8)
    with pytest.raises(ValueError, match=r"spec\.num_latent_stones is 9"):
        bad = dataclasses.replace(io.SEARCH_SPEC, num_latent_stones=9)
        io._search_ext.PiTable(trans=model.trans, codes=codes, bonus=12.0, budget=1, spec=bad)
    assert not hasattr(io, "PI_EAGER") or io.SEARCH_SPEC.pi_eager == io.PI_EAGER  # one statement, read by the kernel
