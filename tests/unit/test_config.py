from pathlib import Path

import pytest

from raysim.config import ConfigError, ExperimentConfig, Fault, load_config, replace

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_match_the_reference_setup():
    cfg = load_config()
    assert (cfg.batch_size, cfg.learning_rate, cfg.memory_fraction, cfg.gpu_fraction) == (
        8,
        1e-4,
        0.23,
        0.23,
    )
    assert cfg.device_memory_gb == 10.0
    assert cfg.dataset == "digits"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert isinstance(load_config(path), ExperimentConfig)


def test_shipped_configs_keep_the_original_keys_and_values():
    single = load_config(CONFIGS / "single_node_config.yaml")
    assert (single.batch_size, single.num_epochs, single.learning_rate) == (8, 100, 0.0001)
    dist = load_config(CONFIGS / "distributed_config.yaml")
    assert (dist.num_nodes, dist.batch_size, dist.memory_fraction) == (4, 8, 0.23)
    assert dist.global_batch_size == 32


def test_overrides_beat_yaml_and_none_is_ignored(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("num_nodes: 2\nbatch_size: 16\n")
    cfg = load_config(path, batch_size=4, num_nodes=None)
    assert (cfg.num_nodes, cfg.batch_size) == (2, 4)


def test_unknown_key_suggests_the_closest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("num_node: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key 'num_node': did you mean 'num_nodes'\?"):
        load_config(path)


def test_wrong_type_names_key_value_and_expected_type():
    with pytest.raises(ConfigError, match=r"batch_size: 'eight' is a str; expected int"):
        load_config(batch_size="eight")
    with pytest.raises(ConfigError, match=r"verbose: 1 is a int; expected bool"):
        load_config(verbose=1)


def test_int_is_accepted_for_float_but_bool_is_not_an_int():
    assert load_config(learning_rate=1).learning_rate == 1
    with pytest.raises(ConfigError, match="num_nodes: True"):
        load_config(num_nodes=True)


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("memory_fraction", 1.5, r"in \(0, 1\]"),
        ("gpu_fraction", 0.0, r"in \(0, 1\]"),
        ("batch_size", 0, "positive batch size"),
        ("num_nodes", 0, "use 1 for a single node"),
        ("learning_rate", -1.0, "positive learning rate"),
        ("dataset", "cars", "not one of digits, imagefolder, synthetic"),
    ],
)
def test_out_of_range_values_name_the_fix(key, value, fix):
    with pytest.raises(ConfigError, match=rf"{key}: {value!r}.*{fix}"):
        load_config(**{key: value})


def test_all_problems_are_reported_together(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_sise: 8\nnum_epochs: many\nlearning_rte: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 3
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("num_nodes: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "must be a mapping")],
)
def test_malformed_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' does not exist"):
        load_config("nope.yaml")


def test_replace_validates():
    cfg = load_config()
    assert replace(cfg, num_nodes=2).num_nodes == 2
    with pytest.raises(ConfigError):
        replace(cfg, num_nodes=-1)


NODE_LOSS = [{"kind": "node_loss", "rank": 1, "epoch": 2}]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"faults": NODE_LOSS}, r"node_loss .*use topology: multi_node"),
        (
            {"topology": "multi_node", "faults": NODE_LOSS, "max_failures": 1},
            r"wait for it forever: set min_nodes below num_nodes \(e.g. 2\)",
        ),
        ({"topology": "multi_node", "address": "auto"}, r"existing cluster .*single_host"),
        ({"min_nodes": 4}, r"min_nodes: 4 is more than num_nodes 3; use 1 to 3"),
        ({"topology": "multinode"}, r"topology: 'multinode' is not one of single_host"),
    ],
)
def test_topology_and_node_loss_rules_name_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(num_nodes=3, **values)


def test_node_loss_in_an_elastic_multi_node_run_is_valid():
    cfg = load_config(
        num_nodes=3, min_nodes=2, topology="multi_node", max_failures=1, faults=NODE_LOSS
    )
    assert cfg.faults == [Fault(kind="node_loss", rank=1, epoch=2)]
    assert load_config(num_nodes=3, topology="multi_node", faults=NODE_LOSS).max_failures == 0


def test_strategy_is_ddp_and_a_near_miss_is_named():
    assert load_config().strategy == "ddp"
    with pytest.raises(
        ConfigError, match=r"strategy: 'dpp' is not one of ddp, zero, fsdp; did you mean 'ddp'"
    ):
        load_config(strategy="dpp")
