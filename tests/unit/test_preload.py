"""The driver's checks and plan need neither torch nor Ray Train: those are imported on a
thread while Ray starts (raysim.preload)."""

import importlib
import subprocess
import sys
import textwrap

import pytest

from raysim.cluster.hardware import cuda_may_be_present
from raysim.preload import ImportsAhead

HEAVY = ("torch", "torchvision", "ray.train", "numpy")


def test_the_drivers_checks_import_no_training_stack(tmp_path):
    probe = textwrap.dedent(f"""
        import sys
        import raysim, raysim.cli, raysim.experiment, raysim.sweep, raysim.fit
        from raysim.builtin.checks import check_data, check_weights
        from raysim.cluster import hardware_for
        from raysim.cluster.hardware import cuda_may_be_present
        from raysim.plan import make_plan
        from raysim.node_program import node_program
        from raysim.record.trackers import check_trackers, trackers_for
        from raysim.worker.startup import StartupMarks
        from raysim.worker.strategies import get_strategy
        cfg = raysim.load_config(num_nodes=4, device="cpu")
        get_strategy(cfg.strategy).training_state(11_000_000, 2, "Adam", cfg.num_nodes)
        check_weights(None)
        check_data(cfg, {str(tmp_path)!r})
        check_trackers(cfg.tracking)
        trackers_for(cfg.tracking, {str(tmp_path)!r}, cfg.to_dict())
        node_program(None)
        StartupMarks().mark("run_start")
        if not cuda_may_be_present():
            make_plan(cfg, hardware_for(cfg))
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_nvidia_driver_file_means_no_cuda(tmp_path):
    files = (str(tmp_path / "nvidiactl"), str(tmp_path / "dxg"))
    if not sys.platform.startswith("linux"):
        pytest.skip("the driver files are Linux's")
    assert not cuda_may_be_present(files)
    (tmp_path / "dxg").touch()
    assert cuda_may_be_present(files)


def test_modules_are_imported_on_the_thread_and_a_failure_is_left_to_the_importer(
    tmp_path, monkeypatch
):
    (tmp_path / "ahead_good.py").write_text(
        "import threading\nTHREAD = threading.current_thread().name\n"
    )
    (tmp_path / "ahead_bad.py").write_text("raise ValueError('a train_fn that does not import')\n")
    (tmp_path / "ahead_after.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    ImportsAhead(["ahead_good", "ahead_bad", "ahead_after"]).wait()
    assert sys.modules["ahead_good"].THREAD == "raysim-imports-ahead"
    assert "ahead_bad" not in sys.modules
    assert "ahead_after" not in sys.modules  # the thread stops at the first failure
    with pytest.raises(ValueError, match="does not import"):
        importlib.import_module("ahead_bad")


def test_the_worker_api_is_its_functions_whatever_was_imported_first():
    import raysim.worker.api
    import raysim.worker.step_posts  # noqa: F401
    from raysim import worker

    for name in worker.__all__:
        assert getattr(worker, name) is getattr(raysim.worker.api, name, None) or (
            name == "ExperimentConfig"
        )
    assert callable(worker.progress)
