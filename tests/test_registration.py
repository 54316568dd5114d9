"""Registration, level names and env_id (spec §5)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import alchemy_gym
from alchemy_gym.levels import find_level, parse_evaluation_name
from tests.conftest import STANDARD

SYMBOLIC_IDS = {
    "Alchemy/SymbolicStandard-v0",
    "Alchemy/SymbolicNoRotation-v0",
    "Alchemy/SymbolicRandomizedMaps-v0",
    "Alchemy/SymbolicAllFixed-v0",
    "Alchemy/SymbolicAllFixedBottleneck1-v0",
    "Alchemy/SymbolicAllFixedBottleneck2-v0",
    "Alchemy/SymbolicAllFixedBottleneck3-v0",
    "Alchemy/SymbolicEvaluation-v0",
}


def test_every_symbolic_level_is_registered_under_the_alchemy_namespace():
    registered = {i for i in gym.registry if i.startswith("Alchemy/")}
    assert SYMBOLIC_IDS <= registered
    assert {lv.symbolic_id for lv in alchemy_gym.levels() if lv.symbolic_id} == SYMBOLIC_IDS
    for level in alchemy_gym.levels():
        if level.symbolic_id:
            assert gym.spec(level.symbolic_id).kwargs["level_name"] == level.name


@pytest.mark.parametrize(
    ("name", "symbolic", "expected"),
    [
        (
            "alchemy/perceptual_mapping_randomized_with_rotation_and_random_bottleneck",
            True,
            "Alchemy/SymbolicStandard-v0",
        ),
        ("perceptual_mapping_randomized_with_random_bottleneck", True, "Alchemy/SymbolicNoRotation-v0"),
        ("alchemy/all_fixed", True, "Alchemy/SymbolicAllFixed-v0"),
        ("alchemy/all_fixed_w_shaping", True, "Alchemy/SymbolicAllFixed-v0"),
        ("alchemy/all_fixed_bottleneck3", True, "Alchemy/SymbolicAllFixedBottleneck3-v0"),
        ("alchemy/evaluation_episodes/321", True, "Alchemy/SymbolicEvaluation-v0"),
        ("alchemy/evaluation_episodes/321", False, "Alchemy/Evaluation-v0"),
        ("alchemy/all_fixed_w_shaping", False, "Alchemy/AllFixedShaping-v0"),
        (STANDARD, False, "Alchemy/Standard-v0"),
        ("Alchemy/SymbolicAllFixed-v0", True, "Alchemy/SymbolicAllFixed-v0"),
    ],
)
def test_env_id_accepts_dm_alchemy_names(name, symbolic, expected):
    assert alchemy_gym.env_id(name, symbolic=symbolic) == expected


@pytest.mark.parametrize(
    ("name", "symbolic", "match"),
    [
        ("alchemy/does_not_exist", True, "unknown Alchemy level 'alchemy/does_not_exist': known levels are"),
        ("alchemy/evaluation_episodes/1000", True, r"allowed alchemy/evaluation_episodes/0 \.\. "),
        ("alchemy/evaluation_episodes/x", True, "is not valid"),
        ("alchemy/all_fixed_bottleneck1", False, "exists only in symbolic Alchemy"),
    ],
)
def test_env_id_rejects_unknown_names(name, symbolic, match):
    with pytest.raises(ValueError, match=match):
        alchemy_gym.env_id(name, symbolic=symbolic)


def test_env_id_type_error():
    with pytest.raises(TypeError, match="must be a str"):
        alchemy_gym.env_id(3)


def test_evaluation_names_parse():
    assert parse_evaluation_name("alchemy/evaluation_episodes/0") == 0
    assert parse_evaluation_name("evaluation_episodes/999") == 999
    assert parse_evaluation_name("alchemy/all_fixed") is None
    assert find_level("alchemy/evaluation_episodes/5").is_evaluation


def test_make_with_a_single_evaluation_name_points_to_the_episode_option():
    with pytest.raises(ValueError, match=r"reset\(options=\{'episode': i\}\)"):
        gym.make("Alchemy/SymbolicAllFixed-v0", level_name="alchemy/evaluation_episodes/4")


def test_level_kwargs_reach_the_env():
    env = gym.make("Alchemy/SymbolicStandard-v0", num_trials=2, max_steps_per_trial=3, end_trial_action=True)
    game = env.unwrapped.game
    assert (game.num_trials, game.max_steps_per_trial, game.num_actions) == (2, 3, 41)
    env.reset(seed=0)
    terminated, steps = False, 0
    while not terminated:
        terminated = env.step(1)[2]
        steps += 1
    assert steps == 6


@pytest.mark.parametrize("name", ["alchemy/bogus", "nonsense", ""])
def test_unknown_symbolic_level_names_raise(name):
    from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv

    with pytest.raises(ValueError, match="unknown Alchemy level"):
        SymbolicAlchemyEnv(name)


def test_custom_combinations_of_level_substrings_follow_dm_alchemy_rules():
    from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv

    rules = SymbolicAlchemyEnv("alchemy/perceptual_mapping_randomized_with_rotation").rules
    assert rules.randomize_maps and rules.rotation and len(rules.graph_masks) == 1


# ------------------------------------------------------------------ one home for level knowledge


def test_the_default_and_evaluation_levels_are_named_once():
    from alchemy_gym import cli
    from alchemy_gym.agents import ideal_observer
    from alchemy_gym.envs.rpc import RpcEnvConfig
    from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv
    from alchemy_gym.envs.vector import SymbolicAlchemyVectorEnv
    from alchemy_gym.levels import DEFAULT_LEVEL, EVALUATION_PRIOR

    assert DEFAULT_LEVEL == STANDARD == find_level("Alchemy/SymbolicStandard-v0").name
    for default in (
        SymbolicAlchemyEnv.__init__.__signature__.parameters["level_name"].default,
        SymbolicAlchemyVectorEnv.__init__.__signature__.parameters["level_name"].default,
        RpcEnvConfig.level_name,
        cli.DEFAULT_LEVEL,
    ):
        assert default is DEFAULT_LEVEL
    assert EVALUATION_PRIOR == find_level("Alchemy/SymbolicNoRotation-v0").name
    assert ideal_observer.IdealObserver.__init__.__defaults__[0] is EVALUATION_PRIOR
    evaluation = find_level("Alchemy/SymbolicEvaluation-v0")
    assert evaluation.prior == EVALUATION_PRIOR and find_level("alchemy/all_fixed").prior == "alchemy/all_fixed"
    assert evaluation.rules == find_level(EVALUATION_PRIOR).rules
    rules = evaluation.rules
    assert not rules.rotation and rules.randomize_maps and len(rules.graph_masks) == 109


@pytest.mark.parametrize(
    ("name", "evaluation", "prior"),
    [
        ("alchemy/evaluation_episodes", True, "alchemy/perceptual_mapping_randomized_with_random_bottleneck"),
        ("evaluation_episodes/7", True, "alchemy/perceptual_mapping_randomized_with_random_bottleneck"),
        ("Alchemy/Evaluation-v0", True, "alchemy/perceptual_mapping_randomized_with_random_bottleneck"),
        ("Alchemy/SymbolicAllFixedBottleneck2-v0", False, "alchemy/all_fixed_bottleneck2"),
        ("perceptual_mapping_randomized_with_rotation", False, "perceptual_mapping_randomized_with_rotation"),
    ],
)
def test_a_names_prior_is_the_evaluation_prior_or_itself(name, evaluation, prior):
    from alchemy_gym.levels import is_evaluation, prior_level

    assert is_evaluation(name) == evaluation and prior_level(name) == prior


def test_an_id_as_level_name_plays_that_levels_rules():
    """Before, an ID (which no level-name substring matches) passed the name check and played all_fixed."""
    env = gym.make("Alchemy/SymbolicAllFixed-v0", level_name="Alchemy/SymbolicStandard-v0")
    rules = env.unwrapped.rules
    assert rules.randomize_maps and rules.rotation and len(rules.graph_masks) == 109
    evaluation = gym.make("Alchemy/SymbolicAllFixed-v0", level_name="Alchemy/SymbolicEvaluation-v0")
    assert evaluation.unwrapped.settings.fixed and evaluation.reset(options={"episode": 3})[1]["episode_index"] == 3


def test_one_evaluation_episode_without_alchemy_prefix_points_to_the_episode_option():
    """Before, ``evaluation_episodes/4`` (no ``alchemy/``) was taken and played all_fixed's random episodes."""
    with pytest.raises(ValueError, match=r"reset\(options=\{'episode': i\}\)"):
        gym.make("Alchemy/SymbolicAllFixed-v0", level_name="evaluation_episodes/4")
