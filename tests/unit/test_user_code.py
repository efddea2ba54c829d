"""A 'module:name' the user gives (--train-fn, estimate's --model) that does not load is
one line naming the problem and the fix, never a traceback."""

import pytest

from raysim.cli import main
from raysim.config.user_code import load_callable
from raysim.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "told"),
    [
        ("no_such_module:build", "cannot import 'no_such_module' (ModuleNotFoundError"),
        ("broken_models:build", "cannot import 'broken_models' (RuntimeError: half-written)"),
        ("os:no_such_factory", "os has no factory 'no_such_factory'"),
        ("os", "not of the form module:factory"),
    ],
)
def test_a_model_that_does_not_load_is_named(spec, told, tmp_path, monkeypatch):
    (tmp_path / "broken_models.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_callable("--model", spec, "factory")
    assert str(info.value).count("\n") == 1 and told in str(info.value)
    assert str(info.value).splitlines()[1].startswith(f"  - --model {spec}: ")


def test_raysim_estimate_says_it_in_one_line(capsys):
    assert main(["estimate", "--model", "no_such_module:build", "--input-shape", "32"]) == 2
    err = capsys.readouterr().err
    assert "--model no_such_module:build: cannot import 'no_such_module'" in err
    assert "give module:factory, importable from the current directory" in err
    assert "Traceback" not in err


def mlp_on_32_features():
    from torch import nn

    return nn.Sequential(nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize(
    ("flags", "told"),
    [
        (["--input-shape", "784"], "one training step on a batch of 4×784 float32 failed ("
         "RuntimeError: "),
        (["--input-shape", "32", "--input-dtype", "int65"], "--input-dtype int65: not a torch "
         "dtype; e.g. float32, int64"),
    ],
)  # fmt: skip
def test_a_factory_whose_step_fails_or_a_bad_dtype_is_one_line(flags, told, capsys):
    spec = "tests.unit.test_user_code:mlp_on_32_features"
    assert main(["estimate", "--model", spec, "--batch-size", "4", *flags]) == 2
    err = capsys.readouterr().err
    assert told in err
    assert "Traceback" not in err and err.count("\n") == 2
