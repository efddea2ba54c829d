"""summary.json's `faults`: one entry per injected fault that fired, with when raysim told
it, the steps it cost and how the run went on. Pure functions over metrics.jsonl's
records and the fault markers (raysim.rundir.fired_faults)."""

from __future__ import annotations

from typing import Any

from raysim.config.faults import LATE_KINDS


def fault_entries(records: list[dict[str, Any]], fired: list[dict[str, Any]]) -> list[dict]:
    """Each fired fault, in the order it fired."""
    return [_entry(fault, records) for fault in sorted(fired, key=lambda f: f["fired_unix"])]


def _entry(fault: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    entry = {k: fault[k] for k in ("kind", "rank", "epoch", "step")}
    entry["fired_unix"] = fault["fired_unix"]
    position = _error_position(fault, records)
    if position is None:  # no failure: the run went on with the node late
        entry.update(detected_after_s=_named_after(fault, records), lost_steps=0)
        entry["went_on"] = "no failure: the run went on"
        return entry
    error = records[position]
    stall = error.get("stall") or {}
    entry["detected_after_s"] = stall.get("detected_after_s", error.get("detect_s"))
    jit = _preempt_checkpoint(fault, records[:position])
    if jit is not None:
        entry.update(_preempt_losses(jit, records, position))
        return entry
    saved, lost = _lost_since_checkpoint(fault, records[:position])
    entry["lost_steps"] = lost
    entry["went_on"] = _went_on(records[position + 1 :], saved)
    return entry


def _preempt_checkpoint(fault: dict[str, Any], before: list[dict]) -> dict | None:
    """The just-in-time checkpoint taken on the fault's notice (preempt only)."""
    if fault["kind"] != "preempt":
        return None
    taken = [r for r in before if r.get("kind") == "preempt_checkpoint"]
    return taken[-1] if taken and taken[-1]["time_unix"] >= fault["fired_unix"] else None


def _preempt_losses(jit: dict[str, Any], records: list[dict], position: int) -> dict:
    """What a preemption with a just-in-time checkpoint cost: the steps each node redoes
    (those after the checkpoint that the resumed epoch starts before), times the nodes,
    and the node-seconds from the checkpoint to the resumed training's start."""
    ranks = [
        r for r in records[position + 1 :]
        if r.get("kind") == "rank" and r.get("epoch") == jit["epoch"]
    ]  # fmt: skip
    if not ranks or "resumed_at_step" not in ranks[0]:
        return {"lost_steps": None, "went_on": _went_on(records[position + 1 :], None)}
    nodes = len(ranks)
    redone = jit["step"] - ranks[0]["resumed_at_step"]
    resumed = min(r["resumed_unix"] for r in ranks)
    recovered = next((r for r in records[position + 1 :] if r.get("kind") == "recovered"), None)
    went_on = (
        f"restarted from the just-in-time checkpoint at epoch {jit['epoch']}, step {jit['step']}"
    )
    if recovered is not None:
        went_on += (
            f"; epoch {recovered['epoch']} reported {recovered['recover_s']:.1f} s after the fault"
        )
    return {
        "lost_steps": redone,
        "lost_node_steps": redone * nodes,
        "lost_node_seconds": nodes * (resumed - jit["time_unix"]),
        "checkpoint_step": jit["step"],
        "went_on": went_on,
    }


def _error_position(fault: dict[str, Any], records: list[dict[str, Any]]) -> int | None:
    """The failure this fault caused: the error record that lists it."""
    if fault["kind"] in LATE_KINDS:
        return None
    for position, record in enumerate(records):
        listed = [f.get("index") for f in record.get("faults", [])]
        if record.get("kind") == "error" and fault["index"] in listed:
            return position
    return None


def _named_after(fault: dict[str, Any], records: list[dict[str, Any]]) -> float | None:
    """A fault that failed nothing is told when its epoch's line names its node the slowest
    (that epoch's last report); None where it never was."""
    epochs = [r for r in records if r.get("kind") == "epoch" and r.get("epoch") == fault["epoch"]]
    if not epochs or epochs[0].get("slowest_rank") != fault["rank"]:
        return None
    reports = [
        r["report_unix"] for r in records
        if r.get("kind") == "rank" and r.get("epoch") == fault["epoch"] and "report_unix" in r
    ]  # fmt: skip
    return max(reports) - fault["fired_unix"] if reports else None


def _lost_since_checkpoint(
    fault: dict[str, Any], before: list[dict[str, Any]]
) -> tuple[int | None, int]:
    """The last checkpointed epoch before the failure (None: none) and the steps each node
    redoes from there: the epochs recorded since, and the fault's epoch up to its step."""
    epochs = [r for r in before if r.get("kind") == "epoch"]
    saved = max((e["epoch"] for e in epochs if e.get("checkpoint")), default=None)
    redone = [e for e in epochs if e["epoch"] > (saved or 0) and e["epoch"] < fault["epoch"]]
    return saved, sum(_steps(e) for e in redone) + fault["step"] - 1


def _steps(epoch: dict[str, Any]) -> int:
    """Loader batches of an epoch: the built-in counts them; else its optimizer steps."""
    return int(epoch.get("steps") or epoch.get("optimizer_steps") or 0)


def _went_on(after: list[dict[str, Any]], saved: int | None) -> str:
    """How the run went on after this fault's failure: restarted if a recovery came, even
    when another fault failed the restarted group first (that failure is told in its own
    entry); failed only if none came."""
    recovered = next((r for r in after if r.get("kind") == "recovered"), None)
    if recovered is None:
        return "the run failed"
    origin = f"epoch {saved}'s checkpoint" if saved is not None else "the start"
    went_on = f"restarted from {origin}"
    failed_again = [r for r in after[: after.index(recovered)] if r.get("kind") == "error"]
    if failed_again:
        return f"{went_on}; failed again ({_kinds(failed_again)}) before an epoch was reported"
    return (
        f"{went_on}; epoch {recovered['epoch']} reported "
        f"{recovered['recover_s']:.1f} s after the fault"
    )


def _kinds(errors: list[dict[str, Any]]) -> str:
    """The fault kinds listed by these error records, or what failed with none listed."""
    kinds = [f["kind"] for error in errors for f in error.get("faults", [])]
    return ", ".join(kinds) or "a failure no fault caused"
