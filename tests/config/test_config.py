"""Config composition: the Hydra tree matches the schemas; bad input names the key."""

import dataclasses

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from robot_rl.config.schema import (
    ConfigError,
    DatasetConfig,
    EvalConfig,
    EvaluateConfig,
    PipelineConfig,
    PretrainConfig,
    RandomizationConfig,
    RecordConfig,
    RobotConfig,
    SimConfig,
    TaskConfig,
    TeleopConfig,
)
from robot_rl.config.store import register_configs, to_object
from robot_rl.paths import CONF_DIR

_SCHEMA_OF = {"pipeline": PipelineConfig, "evaluate": EvaluateConfig, "record": RecordConfig}


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
    assert quick.train.steps < default.train.steps


#: Each config group's schema, and the commands (top configs) that compose it.
GROUP_SCHEMAS = {
    "robot": (RobotConfig, ("pipeline", "evaluate", "record")),
    "task": (TaskConfig, ("pipeline", "evaluate", "record")),
    "sim": (SimConfig, ("pipeline", "evaluate", "record")),
    "dataset": (DatasetConfig, ("pipeline",)),
    "eval": (EvalConfig, ("pipeline", "evaluate")),
    "randomization": (RandomizationConfig, ("pipeline", "evaluate")),
    "teleop": (TeleopConfig, ("record",)),
}
#: The key that names a group's option (task=push is task.name=push): it differs from
#: the schema's default by design.
OPTION_KEYS = {"task": "name", "randomization": "name", "teleop": "device", "dataset": "source"}
#: Options that deliberately set other values than the schema's defaults: presets. For
#: these every key must exist and the option must compose and type-check; every other
#: YAML must restate the schema's defaults exactly. ``{file: keys}``; None = any key.
PRESETS = {
    "dataset/scripted.yaml": {"path"},  # where the pipeline records, in the run dir
    "randomization/light.yaml": None,
    "randomization/heavy.yaml": None,
    "teleop/keyboard.yaml": None,  # a person's devices: real time, review, bindings
    "teleop/gamepad.yaml": None,
    "teleop/spacemouse.yaml": None,
    "teleop/replay.yaml": {"replay_store"},  # required (???)
    "sim/warp.yaml": {"backend"},
}
#: Options a command refuses by name (it would not honour them): ``{file: commands}``.
REFUSED = {"sim/warp.yaml": {"pipeline", "record"}}
#: What a command needs on top of a group option to compose into its schema.
REQUIRED = {
    "evaluate": ["policy=expert"],
    "record": ["store.path=s.zarr"],
}


def _group_files():
    return sorted(
        (d.name, f)
        for d in CONF_DIR.iterdir()
        if d.is_dir() and d.name != "hydra"
        for f in sorted(d.glob("*.yaml"))
    )


def _drift(yaml_node, schema_node, prefix, skip):
    """Keys of a group YAML whose values differ from the schema's defaults, and keys the
    schema lacks; descends into nested dataclasses (ParamRange), not into dict fields."""
    found = []
    values, defaults = OmegaConf.to_container(yaml_node), OmegaConf.to_container(schema_node)
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            found.append(f"{path} (no such field)")
            continue
        default = schema_node._get_node(key)
        if isinstance(default, DictConfig) and dataclasses.is_dataclass(
            OmegaConf.get_type(default)
        ):
            found.extend(_drift(yaml_node._get_node(key), default, f"{path}.", skip))
        elif path not in skip and value != defaults[key]:
            found.append(f"{path}: yaml {value!r}, schema default {defaults[key]!r}")
    return found


def test_every_config_group_has_a_schema():
    groups = {d.name for d in CONF_DIR.iterdir() if d.is_dir() and d.name != "hydra"}
    assert groups == set(GROUP_SCHEMAS) | {"profile"}, "a group without a schema row here"
    assert not (CONF_DIR / "algo").exists(), "algo options are the dataclasses' (ConfigStore)"


@pytest.mark.parametrize(
    "group,path", _group_files(), ids=lambda x: x if isinstance(x, str) else x.name
)
def test_group_yaml_matches_schema_defaults(group, path):
    # A group YAML restates the dataclass defaults (or, for a preset, sets only fields
    # the schema has); drift between them is a bug. Every option composes and
    # type-checks in every command that uses its group.
    raw = OmegaConf.load(path)
    name = f"{group}/{path.name}"
    if group == "profile":  # overrides of the whole pipeline config
        schema = OmegaConf.structured(PipelineConfig)
        for g, (cls, commands) in GROUP_SCHEMAS.items():
            if "pipeline" in commands:
                schema[g] = OmegaConf.structured(cls)
        problems = [p for p in _drift(raw, schema, "", skip=_all_keys(raw)) if "no such" in p]
        assert not problems, f"{name}: {problems}"
        to_object(_compose("pipeline", [f"profile={path.stem}"]), PipelineConfig)
        return
    cls, commands = GROUP_SCHEMAS[group]
    preset = PRESETS.get(name, set())
    skip = _all_keys(raw) if preset is None else {*preset, OPTION_KEYS.get(group, "")}
    problems = _drift(raw, OmegaConf.structured(cls), "", skip)
    assert not problems, f"{name} drifts from {cls.__name__}: {problems}"
    typed = OmegaConf.merge(OmegaConf.structured(cls), raw)  # types checked here
    if not OmegaConf.missing_keys(raw) and not OmegaConf.missing_keys(typed):
        # (an option with a required value is checked composed, below)
        assert isinstance(OmegaConf.to_object(typed), cls)  # values checked here
    for command in commands:
        overrides = [f"{group}={path.stem}", *REQUIRED.get(command, [])]
        if group == "teleop" and path.stem == "replay":
            overrides.append("teleop.replay_store=demos.zarr")
        if group == "dataset" and path.stem == "existing":
            overrides.append("dataset.path=s.zarr")
        if command in REFUSED.get(name, ()):
            with pytest.raises(ConfigError, match="is not supported by"):
                to_object(_compose(command, overrides), _SCHEMA_OF[command])
            continue
        composed = to_object(_compose(command, overrides), _SCHEMA_OF[command])
        assert isinstance(getattr(composed, group), cls)


def _all_keys(node, prefix=""):
    keys = set()
    for key, value in node.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, DictConfig):
            keys |= _all_keys(value, f"{prefix}{key}.")
    return keys


def test_the_drift_check_sees_drift():
    # Guard for the test above: a changed default and an unknown key are both found.
    drift = _drift(
        OmegaConf.create({"n_episodes": 40, "seed": 1_000_000, "colour": "red"}),
        OmegaConf.structured(EvalConfig),
        "",
        set(),
    )
    assert drift == ["n_episodes: yaml 40, schema default 50", "colour (no such field)"]


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
        ("train.steps=0", "train.steps"),
        ("train.device=tpu", "train.device"),
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


# --- settings a command accepts but would not use are refused by name ----------------

COMMAND_NAMES = {"pipeline": "robot-rl-pipeline", "evaluate": "robot-rl-eval"}


@pytest.mark.parametrize("override", ["sim.backend=warp", "sim.warp_device=cuda"])
@pytest.mark.parametrize("command", ["pipeline", "record"])
def test_commands_refuse_the_warp_backend_they_do_not_run(command, override):
    # The commands step the single env on the CPU; sim.backend=warp used to run there
    # silently.
    key = override.split("=")[0].replace(".", r"\.")
    name = COMMAND_NAMES.get(command, f"robot-rl-{command}")
    with pytest.raises(ConfigError, match=rf"{key}='\w+' is not supported by {name} yet"):
        to_object(_compose(command, [override, *REQUIRED.get(command, [])]), _SCHEMA_OF[command])


@pytest.mark.parametrize(
    "override",
    [
        "dataset.n_episodes=5",
        "dataset.action_noise_std=0.3",
        "dataset.seed=4",
        "dataset.operator=x",
    ],
)
def test_an_existing_store_refuses_recording_settings(override):
    key = override.split("=")[0].replace(".", r"\.")
    overrides = ["dataset=existing", "dataset.path=s.zarr", override]
    with pytest.raises(
        ConfigError, match=rf"{key}=.* is not used by robot-rl-pipeline with dataset=existing"
    ):
        to_object(_compose("pipeline", overrides), PipelineConfig)


def test_quick_profile_on_an_existing_store_says_what_to_do():
    overrides = ["profile=quick", "dataset=existing", "dataset.path=s.zarr"]
    with pytest.raises(ConfigError, match=r"profile=quick sets dataset\.n_episodes"):
        to_object(_compose("pipeline", overrides), PipelineConfig)
    to_object(_compose("pipeline", [*overrides, "dataset.n_episodes=100"]), PipelineConfig)


def test_pretrain_has_no_recording_settings():
    # robot-rl-pretrain reads a store: its dataset is the path and the keys, no more.
    with pytest.raises(ConfigCompositionException, match=r"dataset\.n_episodes"):
        _compose("pretrain", ["dataset.path=s.zarr", "dataset.n_episodes=5"])


@pytest.mark.parametrize(
    "device,override",
    [
        ("keyboard", "teleop.action_noise_std=0.1"),
        ("scripted", "teleop.deadzone=0.2"),
        ("scripted", "teleop.events_out=events.jsonl"),
        ("replay", "teleop.speed=0.5"),
        ("gamepad", "teleop.axis_convention=hid"),
        ("spacemouse", "teleop.joystick_index=1"),
    ],
)
def test_record_refuses_teleop_settings_the_device_does_not_read(device, override):
    key = override.split("=")[0].replace(".", r"\.")
    overrides = [f"teleop={device}", "store.path=s.zarr", "teleop.replay_store=d.zarr", override]
    if device != "replay":
        overrides.remove("teleop.replay_store=d.zarr")
    with pytest.raises(ConfigError, match=rf"{key}=.* is not read by teleop={device}: only by"):
        to_object(_compose("record", overrides), RecordConfig)


def test_event_clock_needs_an_event_log():
    base = ["teleop=keyboard", "store.path=s.zarr", "teleop.events_clock=time"]
    with pytest.raises(ConfigError, match=r"teleop\.events_clock"):
        to_object(_compose("record", base), RecordConfig)
    cfg = to_object(_compose("record", [*base, "teleop.events_in=e.jsonl"]), RecordConfig)
    assert cfg.teleop.events_clock == "time"


def test_the_config_layer_imports_no_torch():
    # Configs compose and fail fast (and --help answers) before training code loads.
    import subprocess
    import sys

    code = (
        "import sys, robot_rl.config, robot_rl.config.store; "
        "from robot_rl.config import IQLConfig; IQLConfig(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
