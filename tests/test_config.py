"""Config system: every shipped config validates; errors name file, key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from cifar_ops.config import RunConfig, SearchConfig, load_config, load_run_config
from cifar_ops.errors import ConfigError
from tests.conftest import REPO

CONFIGS = sorted((REPO / "jobs" / "configs").rglob("*.yaml"))
SEED_CONFIGS = {
    "simple_cnn", "conv4_sgd", "custom_cnn", "vgg10", "resnet20", "resnet_wide",
    "mobilenetv2", "efficientnetv2b0", "fast",
}  # fmt: skip


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_seed_family_has_a_config() -> None:
    names = {p.stem for p in (REPO / "jobs" / "configs").glob("*.yaml")}
    assert names >= SEED_CONFIGS
    assert (REPO / "jobs" / "configs" / "grids" / "conv4_sgd.yaml").is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, RunConfig | SearchConfig)


def test_conv4_grid_expands_to_every_point() -> None:
    search = load_config(REPO / "jobs/configs/grids/conv4_sgd.yaml")
    assert isinstance(search, SearchConfig)
    assert len(search.trials) == 3 * 2 * 2 * 2
    assert [t.index for t in search.trials] == list(range(24))
    hashes = {t.config.config_hash() for t in search.trials}
    assert len(hashes) == 24, "each grid point is a distinct config"
    first = search.trials[0]
    assert first.config.optimizer.learning_rate == first.params["optimizer.learning_rate"]
    assert first.config.model.name == "conv4_bn"  # inherited from base:


def test_random_search_is_seeded_and_respects_ranges(tmp_path: Path) -> None:
    text = """
experiment: rnd
model: {name: simple_cnn}
search:
  method: random
  trials: 6
  seed: 3
  parameters:
    optimizer.learning_rate: {log_uniform: [0.0001, 0.1]}
    train.batch_size: [32, 64, 128]
"""
    a = load_config(write(tmp_path, text))
    b = load_config(write(tmp_path, text, "d.yaml"))
    assert isinstance(a, SearchConfig) and isinstance(b, SearchConfig)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    for trial in a.trials:
        assert 1e-4 <= trial.params["optimizer.learning_rate"] <= 0.1
        assert trial.params["train.batch_size"] in (32, 64, 128)


def test_hash_is_stable_and_ignores_where_it_runs(tmp_path: Path) -> None:
    base = "experiment: a\nmodel: {name: vgg10}\n"
    one = load_run_config(write(tmp_path, base))
    moved = load_run_config(
        write(tmp_path, base, "b.yaml"),
        ["experiment=b", "executor.kind=kubernetes", "resources.cpu=8", "monitoring.port=9100"],
    )
    # one replica either way; more is another run (see test_config_schema's replica tests)
    assert (
        one.config_hash()
        == load_run_config(write(tmp_path, base), ["resources.gpus=0"]).config_hash()
    )
    changed = load_run_config(write(tmp_path, base, "c.yaml"), ["train.epochs=3"])
    assert one.config_hash() == moved.config_hash()
    assert one.config_hash() != changed.config_hash()
    assert len(one.config_hash()) == 64


def test_set_overrides_parse_yaml_values(tmp_path: Path) -> None:
    config = load_run_config(
        REPO / "jobs/configs/vgg10.yaml",
        ["train.epochs=2", "model.filters=[8, 16, 32]", "data.source=synthetic", "seed=7"],
    )
    assert config.train.epochs == 2
    assert config.model.filters == [8, 16, 32]  # type: ignore[union-attr]
    assert config.data.source == "synthetic"
    assert config.seed == 7


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (
            "experiment: x\nmodel: {name: vgg10}\ndata: {source: cifar11}",
            [],
            ["data.source", "'cifar11'", "'cifar10', 'folder' or 'synthetic'"],
        ),
        (
            "experiment: x\nmodel: {name: vgg10, foo: 1}",
            [],
            ["model.foo: unknown key", "batch_norm", "filters"],
        ),
        ("experiment: x\nmodel: {name: vgg11}", [], ["model.name", "resnet20", "efficientnetv2b0"]),
        ("experiment: x\nmodel: {name: vgg10}", ["train.epochs=0"], ["train.epochs", "got 0"]),
        (
            "experiment: x\nmodel: {name: vgg10}",
            ["train.epoch=3"],
            ["train.epoch: unknown key", "epochs"],
        ),
        ("experiment: x\nmodel: {name: vgg10}\ndata: {source: folder}", [], ["data.dir"]),
        ("experiment: x\nmodel: {name: resnet20, depth: 21}", [], ["model.depth", "6n+2"]),
        (
            "experiment: x\nmodel: {name: vgg10}\ntrain: {epochs: 5}\n"
            "schedule: {name: piecewise, stages: [{epochs: 2, learning_rate: 0.1}]}",
            [],
            ["cover 2 epochs", "train.epochs is 5"],
        ),
        ("experiment: bad name!\nmodel: {name: vgg10}", [], ["experiment", "pattern"]),
        (
            "experiment: x\nmodel: {name: vgg10}\nsearch: {method: grid, parameters: {a: 1}}",
            [],
            ["search.parameters"],
        ),
        (
            "experiment: x\nmodel: {name: vgg10}\nsearch: {method: random, parameters: {a: [1]}}",
            [],
            ["search.trials is required"],
        ),
        (
            "experiment: x\nmodel: {name: vgg10}\nsearch: {parameters: {model.nope: [1, 2]}}",
            [],
            ["search trial 0", "model.nope: unknown key"],
        ),
        ("experiment: x\nmodel: [1, 2\n", [], ["invalid YAML", "line"]),
        ("- a\n- b\n", [], ["top level must be a mapping"]),
        ("experiment: x\nmodel: {name: vgg10}", ["noequals"], ["--set takes key=value"]),
    ],
)
def test_bad_configs_name_file_key_and_allowed(
    tmp_path: Path, text: str, overrides: list[str], expected: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message
    assert info.value.exit_code == 2


def test_a_check_across_sections_reads_as_its_own_message(tmp_path: Path) -> None:
    """A whole-config check names its keys itself: no placeholder location before it."""
    path = write(
        tmp_path,
        "experiment: x\nmodel: {name: vgg10}\ntrain: {epochs: 5}\n"
        "schedule: {name: piecewise, stages: [{epochs: 2, learning_rate: 0.1}]}",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: schedule.stages cover 2 epochs but train.epochs is 5"


def test_missing_file_and_base_cycle(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path, "base: b.yaml\nexperiment: a\n", "a.yaml")
    write(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_search_file_refused_where_a_run_is_needed() -> None:
    with pytest.raises(ConfigError, match="search config"):
        load_run_config(REPO / "jobs/configs/grids/conv4_sgd.yaml")


def test_resource_quantities_accept_numbers_and_reject_junk(tmp_path: Path) -> None:
    path = write(tmp_path, "experiment: a\nmodel: {name: vgg10}\n")
    config = load_run_config(path, ["resources.cpu=8", "resources.memory=32Gi"])
    assert config.resources.cpu == "8" and config.resources.memory == "32Gi"
    assert load_run_config(path, ["resources.cpu=500m"]).resources.cpu == "500m"
    with pytest.raises(ConfigError, match="resources.memory"):
        load_run_config(path, ["resources.memory=lots"])


@pytest.mark.parametrize(
    "gateway",
    [
        "http://pusher:S3cret@pushgateway:9091",
        "http://pusher@pushgateway:9091",
        "pusher:S3cret@pushgateway:9091",
        "http://pushgateway:9091/?password=S3cret",
    ],
)
def test_pushgateway_credentials_in_a_config_are_refused_without_echoing_them(
    tmp_path: Path, gateway: str
) -> None:
    base = REPO / "jobs" / "configs" / "simple_cnn.yaml"
    path = write(tmp_path, f"base: {base}\nmonitoring: {{pushgateway: '{gateway}'}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "monitoring.pushgateway" in message
    assert (
        "CIFAR_OPS_PUSHGATEWAY_USERNAME" in message and "CIFAR_OPS_PUSHGATEWAY_PASSWORD" in message
    )
    assert "S3cret" not in message
    with pytest.raises(ConfigError) as caught:
        load_config(base, [f"monitoring.pushgateway={gateway}"])
    assert "S3cret" not in str(caught.value)
    assert load_config(base, ["monitoring.pushgateway=http://pushgateway:9091"])
