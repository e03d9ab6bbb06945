"""Config composition: the Hydra tree matches the schemas; bad input names the key."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException

from robot_rl.config.schema import (
    ConfigError,
    EvaluateConfig,
    PipelineConfig,
    PretrainConfig,
    TaskConfig,
)
from robot_rl.config.store import register_configs, to_object
from robot_rl.paths import CONF_DIR


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_configs()


def _compose(name, overrides=()):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


@pytest.mark.parametrize("task", ["reach", "push", "lift"])
def test_pipeline_composes_for_every_task(task):
    cfg = to_object(_compose("pipeline", [f"task={task}"]), PipelineConfig)
    assert isinstance(cfg.task, TaskConfig) and cfg.task.name == task
    assert cfg.task.control_hz == 20.0 and cfg.task.action_mode == "ee_delta"
    assert cfg.robot.scene_xml == "scenes/table_cube.xml"


def test_quick_profile_overrides_group_values():
    default = to_object(_compose("pipeline"), PipelineConfig)
    quick = to_object(_compose("pipeline", ["profile=quick"]), PipelineConfig)
    assert quick.profile == "quick" and default.profile == "full"
    assert quick.dataset.n_episodes < default.dataset.n_episodes
    assert quick.algo.steps < default.algo.steps


def test_group_yaml_matches_schema_defaults():
    # The YAML files restate the dataclass defaults; drift between them is a bug.
    cfg = to_object(_compose("pipeline", ["task=push"]), PipelineConfig)
    assert cfg.task == TaskConfig(name="push")


def test_other_commands_compose():
    pre = to_object(_compose("pretrain", ["dataset.path=/some/store.zarr"]), PretrainConfig)
    assert pre.dataset.path == "/some/store.zarr" and pre.algo.name == "bc"
    ev = to_object(_compose("evaluate", ["policy=expert", "task=lift"]), EvaluateConfig)
    assert ev.policy == "expert" and ev.task.name == "lift"


def test_missing_required_value_is_named():
    with pytest.raises(ConfigError, match="policy"):
        to_object(_compose("evaluate"), EvaluateConfig)


def test_unknown_key_is_rejected_with_its_name():
    with pytest.raises(ConfigCompositionException, match=r"task\.reward_kind"):
        _compose("pipeline", ["task.reward_kind=dense"])


def test_wrong_type_is_rejected_with_its_name():
    with pytest.raises(ConfigCompositionException, match=r"task\.horizon_steps"):
        _compose("pipeline", ["task.horizon_steps=soon"])


def test_unknown_group_option_lists_the_group():
    with pytest.raises(MissingConfigException, match="task/stack"):
        _compose("pipeline", ["task=stack"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("task.reward_type=shaped", "task.reward_type"),
        ("task.control_hz=0", "task.control_hz"),
        ("algo.steps=0", "algo.steps"),
        ("algo.hidden_sizes=[]", "algo.hidden_sizes"),
        ("dataset.n_episodes=-3", "dataset.n_episodes"),
        ("eval.n_episodes=0", "eval.n_episodes"),
        ("sim.backend=gpu", "sim.backend"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        to_object(_compose("pipeline", [override]), PipelineConfig)


def test_existing_dataset_needs_a_path():
    with pytest.raises(ConfigError, match=r"dataset\.path"):
        to_object(_compose("pipeline", ["dataset=existing"]), PipelineConfig)
    cfg = to_object(
        _compose("pipeline", ["dataset=existing", "dataset.path=s.zarr"]), PipelineConfig
    )
    assert cfg.dataset.path == "s.zarr" and cfg.dataset.source == "existing"


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["task.control_hz=30"], r"task\.control_hz"),  # 33.3 ms is not whole 2 ms steps
        (["task.action_mode=joint_delta"], r"task\.action_mode"),  # experts command the EE
    ],
)
def test_cross_group_constraints_fail_before_anything_runs(overrides, key):
    with pytest.raises(ConfigError, match=key):
        to_object(_compose("pipeline", overrides), PipelineConfig)


@pytest.mark.parametrize("device", ["scripted", "keyboard", "spacemouse", "gamepad", "replay"])
def test_record_composes_for_every_teleop_device(device):
    from robot_rl.config.schema import RecordConfig, TeleopConfig

    overrides = [f"teleop={device}", "store.path=s.zarr"]
    if device == "replay":
        overrides.append("teleop.replay_store=demos.zarr")
    cfg = to_object(_compose("record", overrides), RecordConfig)
    assert isinstance(cfg.teleop, TeleopConfig) and cfg.teleop.device == device
    human = device in ("keyboard", "spacemouse", "gamepad")
    assert cfg.teleop.realtime is human and cfg.teleop.review is human
    assert cfg.store.path == "s.zarr" and cfg.seed is None


def test_teleop_yaml_restates_the_device_defaults():
    # The YAML files show operators their bindings; drift from the code defaults is a bug.
    from robot_rl.config.schema import RecordConfig
    from robot_rl.teleop.devices.gamepad import DEFAULT_GAMEPAD_AXES, DEFAULT_GAMEPAD_BINDINGS
    from robot_rl.teleop.devices.keyboard import DEFAULT_KEYBOARD_BINDINGS
    from robot_rl.teleop.devices.spacemouse import (
        DEFAULT_SPACEMOUSE_AXES,
        DEFAULT_SPACEMOUSE_BINDINGS,
    )

    def teleop(device):
        return to_object(
            _compose("record", [f"teleop={device}", "store.path=s.zarr"]), RecordConfig
        ).teleop

    assert teleop("keyboard").bindings == DEFAULT_KEYBOARD_BINDINGS
    assert teleop("gamepad").bindings == DEFAULT_GAMEPAD_BINDINGS
    assert tuple(teleop("gamepad").axes) == DEFAULT_GAMEPAD_AXES
    assert teleop("spacemouse").bindings == DEFAULT_SPACEMOUSE_BINDINGS
    assert tuple(teleop("spacemouse").axes) == DEFAULT_SPACEMOUSE_AXES


@pytest.mark.parametrize(
    "override,key",
    [
        ("teleop.speed=0", r"teleop\.speed"),
        ("teleop.axes=[x,y]", r"teleop\.axes"),
        ("teleop.review=true", r"teleop\.review"),  # the scripted expert has no operator
        ("teleop.device=joystick", r"teleop\.device"),
        ("n_episodes=-1", "n_episodes"),
        ("queue_blocks=1", "queue_blocks"),
    ],
)
def test_bad_record_values_name_the_key(override, key):
    from robot_rl.config.schema import RecordConfig

    with pytest.raises(ConfigError, match=key):
        to_object(_compose("record", ["store.path=s.zarr", override]), RecordConfig)


@pytest.mark.parametrize("preset", ["none", "light", "heavy"])
def test_randomization_presets_compose(preset):
    from robot_rl.config.schema import RandomizationConfig

    cfg = to_object(_compose("pipeline", [f"randomization={preset}"]), PipelineConfig)
    assert isinstance(cfg.randomization, RandomizationConfig)
    assert cfg.randomization.name == preset
    assert cfg.randomization.enabled == (preset != "none")
    if preset == "none":
        assert cfg.randomization == RandomizationConfig()  # YAML matches schema defaults


def test_unknown_randomization_parameter_is_refused():
    with pytest.raises(ConfigCompositionException, match="cube_color"):
        _compose("pipeline", ["randomization.cube_color=1"])
    with pytest.raises(ConfigCompositionException, match="dist"):
        _compose("pipeline", ["randomization.friction_scale.distribution=uniform"])


def test_bad_randomization_range_from_hydra_names_the_key():
    overrides = [
        "randomization=heavy",
        "randomization.object_mass_scale.low=3.0",
    ]
    with pytest.raises(ConfigError, match=r"randomization\.object_mass_scale\.low/high"):
        to_object(_compose("pipeline", overrides), PipelineConfig)
    with pytest.raises(ConfigError, match=r"randomization\.link_mass_scale\.low"):
        to_object(
            _compose("pipeline", ["randomization=light", "randomization.link_mass_scale.low=-1"]),
            PipelineConfig,
        )


@pytest.mark.parametrize("override", ["+task.foo=1", "+randomization.cube_color=1", "+extra=1"])
def test_plus_overrides_cannot_sneak_in_unknown_keys(override):
    key = override[1:].split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        to_object(_compose("pipeline", [override]), PipelineConfig)
