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


def _tensors_glibc_keeps(results):
    import torch

    from raysim.procfs import anonymous_resident_bytes
    from raysim.worker.glibc import free_heap_bytes
    from raysim.worker.memory import enforce_cpu_budget

    guard = enforce_cpu_budget(0, 2000 * MB, 0.2, 10_000 * MB)
    bump = torch.ones(8 * MB // 4)  # mapped alone; freed, glibc keeps later ones this size
    del bump
    chunks = [torch.ones(4 * MB // 4) for _ in range(30)]  # from the heap now
    kept = chunks[-1]  # the heap's top stays in use, so nothing below it is trimmed
    del chunks
    guard.sample()
    results.put((
        anonymous_resident_bytes() - guard.baseline_resident_bytes, free_heap_bytes(),
        guard.peak_bytes, guard.take_epoch()["memory_peak_bytes"], kept.numel(),
    ))  # fmt: skip


def test_freed_tensors_that_glibc_keeps_for_reuse_are_not_held():
    """A device's allocator counts live tensors, not its cache: 116 MB of freed 4 MB tensors
    stay resident in glibc's heap, and the node holds one of them."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_tensors_glibc_keeps, args=(results,))
    child.start()
    resident_growth, free, sampled, epoch_peak, _ = results.get(timeout=120)
    child.join()
    assert resident_growth >= 100 * MB and free >= 100 * MB  # glibc kept them resident
    assert 3 * MB <= sampled <= 20 * MB  # the 4 MB tensor kept
    assert epoch_peak <= 20 * MB


def _tensors_under_a_sharded_strategy(results):
    import torch

    from raysim.procfs import anonymous_resident_bytes
    from raysim.worker.glibc import free_heap_bytes
    from raysim.worker.strategies.base import return_large_frees

    return_large_frees(torch.nn.Linear(4, 4))  # a model on the CPU
    before = anonymous_resident_bytes()
    bump = torch.ones(8 * MB // 4)  # as in _tensors_glibc_keeps
    del bump
    chunks = [torch.ones(4 * MB // 4) for _ in range(30)]
    kept = chunks[-1]
    del chunks
    results.put((anonymous_resident_bytes() - before, free_heap_bytes(), kept.numel()))


def test_under_a_sharded_strategy_freed_large_tensors_leave_the_process():
    """FSDP and ZeRO free and re-allocate large tensors every step: on the CPU they are
    mapped alone and unmapped when freed, so glibc keeps none of them (against 100 MB and
    more in test_freed_tensors_that_glibc_keeps_for_reuse_are_not_held)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_tensors_under_a_sharded_strategy, args=(results,))
    child.start()
    resident_growth, free, _ = results.get(timeout=120)
    child.join()
    assert free < 10 * MB
    assert resident_growth < 20 * MB  # the 4 MB tensor kept
