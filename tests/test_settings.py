"""Settings are declared once: the envs' signatures, docstring tables and the README's table come from them."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import gymnasium as gym
import pytest

import alchemy_gym  # noqa: F401  (registers the IDs)
from alchemy_gym.envs.gymnasium_version import VECTOR_API
from alchemy_gym.envs.symbolic import SymbolicAlchemyEnv
from alchemy_gym.envs.symbolic_settings import SymbolicSettings, VectorSettings
from alchemy_gym.envs.vector import SymbolicAlchemyVectorEnv

README = Path(__file__).resolve().parents[1] / "README.md"


def _rpc():
    pytest.importorskip("dm_env_rpc")
    from alchemy_gym.envs.rpc import RpcAlchemyEnv, RpcEnvConfig

    return RpcAlchemyEnv, RpcEnvConfig


@pytest.mark.parametrize(
    ("env", "settings"),
    [(SymbolicAlchemyEnv, SymbolicSettings), (SymbolicAlchemyVectorEnv, VectorSettings), ("rpc", "rpc")],
)
def test_docstring_tables_and_signatures_come_from_the_settings(env, settings):
    if env == "rpc":
        env, settings = _rpc()
    source = inspect.getsource(inspect.getmodule(env))
    assert settings.fill_table(source, indent="    ") == source, f"regenerate the table of {env.__name__}"
    names = [p.name for p in inspect.signature(env).parameters.values()]
    assert set(settings.names()) <= set(names)
    defaults = {p.name: p.default for p in inspect.signature(env).parameters.values()}
    assert all(defaults[f.name] == f.default for f in dataclasses.fields(settings))


def test_the_readme_table_is_the_symbolic_settings_table():
    text = README.read_text()
    assert SymbolicSettings.fill_table(text) == text, "regenerate the README's settings table"


def test_unknown_and_bad_settings_say_what_is_allowed():
    with pytest.raises(
        TypeError,
        match=r"^SymbolicAlchemyEnv\.__init__\(\) got an unexpected keyword argument 'num_trails': "
        r"unknown symbolic env setting\(s\) \['num_trails'\]; the settings are level_name, end_trial_action",
    ):
        SymbolicAlchemyEnv(num_trails=3)
    # through gymnasium.make too (Python's wording first: TorchRL drops the kwargs it added on seeing it)
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'frameskip'.*the settings are level_name"):
        gym.make("Alchemy/SymbolicStandard-v0", frameskip=1)
    if VECTOR_API:  # (on gymnasium 0.29 the vector env says first that it needs gymnasium>=1.0)
        with pytest.raises(
            TypeError, match=r"SymbolicAlchemyVectorEnv\.__init__\(\) got an unexpected keyword argument 'x'"
        ):
            SymbolicAlchemyVectorEnv(2, x=1, y=2)
    with pytest.raises(TypeError, match="end_trial_action must be a bool"):
        SymbolicSettings(end_trial_action=1)
    with pytest.raises(ValueError, match=r"max_steps_per_trial=0 out of range: allowed 1\.\.2\*\*31-1"):
        SymbolicSettings(max_steps_per_trial=0)
    with pytest.raises(ValueError, match="render_mode 'ansi' is not supported: allowed None or 'rgb_array'"):
        VectorSettings(render_mode="ansi")
    settings = SymbolicSettings(num_trials=4)
    assert settings.replace(max_steps_per_trial=7).num_trials == 4
    with pytest.raises(ValueError, match="num_trials=11 out of range: allowed 1..10"):
        SymbolicSettings(level_name="alchemy/evaluation_episodes", num_trials=11)


def test_the_3d_envs_take_one_settings_class():
    RpcAlchemyEnv, RpcEnvConfig = _rpc()
    from alchemy_gym.envs.rpc_vector import RpcAlchemyVectorEnv

    vector = [p.name for p in inspect.signature(RpcAlchemyVectorEnv).parameters.values()]
    assert vector[:2] == ["num_envs", "level_name"] and set(RpcEnvConfig.names()) <= set(vector)
    with pytest.raises(
        TypeError, match=r"got an unexpected keyword argument 'widht': unknown 3D env setting\(s\) \['widht'\]"
    ):
        RpcAlchemyEnv("alchemy/all_fixed", widht=3)
    with pytest.raises(ValueError, match="request_timeout must be a positive number of seconds or None"):
        RpcEnvConfig(request_timeout=0)
    with pytest.raises(ValueError, match="at most one of address= and binary="):
        RpcEnvConfig(address="localhost:1", binary="x")
    config = RpcEnvConfig(level_name="alchemy/evaluation_episodes/7")
    assert config.evaluation and config.fixed_episode == 7


def test_the_docs_info_tables_are_the_info_schema():
    from alchemy_gym.envs.info import RPC_INFO_KEYS, info_table

    docs = README.parent / "docs"
    assert info_table() in (docs / "symbolic.md").read_text(), "regenerate docs/symbolic.md's info table"
    assert info_table(RPC_INFO_KEYS) in (docs / "3d.md").read_text(), "regenerate docs/3d.md's info table"
