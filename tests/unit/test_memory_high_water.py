"""A node's memory peak holds what lived only within a step: a tensor freed before the
step's end still counts (Linux's resident high-water mark), and the next epoch starts
again from what is held."""

import multiprocessing

from raysim.units import MB


def _epoch_with_a_freed_tensor(results):
    import torch

    from raysim.procfs import peak_rss_bytes
    from raysim.worker.memory import enforce_cpu_budget

    guard = enforce_cpu_budget(0, 2000 * MB, 0.2, 10_000 * MB)
    transient = torch.ones(200 * MB // 4)  # written, so resident: a backward's buffers
    del transient
    guard.sample()  # at the step's end it is gone
    at_boundary = guard.peak_bytes
    first = guard.take_epoch()["memory_peak_bytes"]
    second = guard.take_epoch()["memory_peak_bytes"]
    results.put((at_boundary, first, second, peak_rss_bytes()))


def test_a_tensor_freed_within_the_step_counts_and_the_next_epoch_starts_again():
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_epoch_with_a_freed_tensor, args=(results,))
    child.start()
    at_boundary, first, second, lifetime_peak = results.get(timeout=120)
    child.join()
    assert at_boundary < 50 * MB  # the data segment after the free: what sampling alone saw
    assert 195 * MB <= first <= 260 * MB
    assert second < 50 * MB
    assert lifetime_peak >= first  # the process's own peak survives the restarts


def test_where_the_mark_cannot_be_restarted_only_the_samples_count():
    """A kernel that refuses the restart would give the high-water mark of the process's
    whole life (its imports included): the guard then keeps to its samples."""
    import torch

    from raysim.procfs import anonymous_resident_bytes, data_segment_bytes
    from raysim.worker.memory import MemoryGuard

    guard = MemoryGuard(
        0, 2000 * MB, 0.2, 10_000 * MB, data_segment_bytes(), "cpu",
        baseline_resident_bytes=anonymous_resident_bytes(), high_water_kept=False,
    )  # fmt: skip
    transient = torch.ones(200 * MB // 4)
    del transient
    assert guard.take_epoch()["memory_peak_bytes"] < 50 * MB
