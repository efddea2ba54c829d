"""BENCHMARKS.md's tables are what benchmarks/tables.py renders from the kept results."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import formatting  # noqa: E402
import tables  # noqa: E402

TEXT = tables.DOC.read_text()
STARTUP = {  # bench_startup.json's shape, figures made up
    "commit": "abc1234",
    "command": "python benchmarks/bench_startup.py --repeats 2",
    "date": "2026-12-02",
    "nodes": 4,
    "repeats": 2,
    **{
        part: {
            "runs": {},
            "median_s": {
                "ray-train": {"first_line_s": 9.0 + shift},
                "ray-train-ddp": {
                    "first_line_s": 9.1 + shift,
                    "first_step_start_s": 11.0 + shift,
                    "first_step_end_s": 11.2 + shift,
                },
                "raysim": {
                    "first_step_s": 12.5 + shift,
                    "stages": {"driver: imports": 1.5, "the first batch": 0.25 + shift},
                },
            },
        }
        for part, shift in (("cold", 7.0), ("warm", 0.0))
    },
    "sweep": {
        "points": 3,
        "seconds": {"sweep": [30.0, 32.0], "single_runs": [60.0, 64.0]},
        "median_s": {"sweep": 31.0, "single_runs": 62.0},
        "saved_per_point_after_the_first_s": 15.5,
    },
}


def results_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(tables.RESULTS, copy)
    return copy


def test_every_block_is_what_its_file_renders():
    problems, skipped = tables.check(TEXT)
    assert problems == []
    assert skipped == []


def test_every_results_file_the_text_names_has_a_block_or_is_a_finished_ab():
    outside = tables.BLOCK.sub("", TEXT)
    named = set()
    for match in re.finditer(r"benchmarks/results/([\w.{},-]+\.json)", outside):
        named.update(expand(match[1]))
    in_blocks = {block["file"] for block in tables.blocks(TEXT)}
    finished = {
        name for name in named if "trees" in json.loads((tables.RESULTS / name).read_text())
    }
    assert finished == FINISHED_AB, "each finished A/B: one line naming its file"
    assert named and named - finished <= in_blocks
    missing = [file for file, _ in tables.BLOCKS.values() if not (tables.RESULTS / file).exists()]
    assert missing == [], "every table's result is kept"


FINISHED_AB = {
    "bench_cli_start.json", "bench_ab_house.json", "bench_ab_buckets.json",
    "bench_ab_helpers.json", "bench_ab_preload.json", "bench_ab_coordinator.json",
    "bench_ab_imports_ahead.json", "bench_ab_house_round3.json", "bench_ab_poll.json",
    "bench_ab_controller_poll.json", "bench_ab_short_run.json", "bench_ab_house_round4.json",
    "bench_ab_first_step_16.json",
}  # fmt: skip


def expand(name: str) -> list[str]:
    """`bench_switches_{cpu,cuda}.json` names two files."""
    found = re.search(r"\{([\w,]+)\}", name)
    if not found:
        return [name]
    return [name.replace(found[0], part) for part in found[1].split(",")]


@pytest.mark.parametrize(
    ("block", "path", "value"),
    [
        ("network", ("rows", 0, "measured_step_s"), 0.5),
        ("core_ratios", ("ratios", "raysim-4 / ddp-4", "min"), 0.5),
        ("core_serial_32", ("serial-4", "max"), 999.0),
        ("fit", ("result", "largest_batch"), 7),
    ],
)
def test_a_changed_figure_fails_the_check(tmp_path, block, path, value):
    results = results_copy(tmp_path)
    file = tables.BLOCKS[block][0]
    data = json.loads((results / file).read_text())
    *outer, last = path
    formatting.dig(data, tuple(outer))[last] = value
    (results / file).write_text(json.dumps(data))
    problems, _ = tables.check(TEXT, results)
    assert problems == [f"{block}: differs from {file}"]


def test_provenance_on_top_and_another_key_order_render_the_same_table(tmp_path):
    results = results_copy(tmp_path)
    data = json.loads((results / "bench_network.json").read_text())
    before = tables.render("network", results)
    provenance = {
        "commit": "abc1234",
        "command": "python benchmarks/bench_network.py",
        "machine": {"cores": 2},
        "versions": {"torch": "2.14.1"},
    }
    body = {key: value for key, value in data.items() if key not in provenance}
    shuffled = {**provenance, **dict(reversed(list(body.items())))}
    (results / "bench_network.json").write_text(json.dumps(shuffled))
    after = tables.render("network", results)
    assert after.split("\n\nResult:")[0] == before.split("\n\nResult:")[0]
    line = f"Result: commit abc1234, {data['date']}, `python benchmarks/bench_network.py`."
    assert line in after


def test_the_startup_blocks_render_the_new_shape_and_skip_the_old(tmp_path):
    results = results_copy(tmp_path)
    old = json.loads((results / "bench_startup.json").read_text())
    old.pop("cold", None)
    (results / "bench_startup.json").write_text(json.dumps(old))
    with pytest.raises(tables.Skip):
        tables.render("startup", results)
    (results / "bench_startup.json").write_text(json.dumps(STARTUP))
    medians = tables.render("startup", results)
    assert "| median of 2, 4 nodes | cold | warm |" in medians
    assert "| stock TorchTrainer: first DDP step | 18.00 s | 11.00 s |" in medians
    assert "| raysim − stock first line | +3.50 s | +3.50 s |" in medians
    assert "| raysim − stock first DDP step | +1.50 s | +1.50 s |" in medians
    assert "Result: commit abc1234, 2026-12-02," in medians
    assert "| the first batch | 7.25 s | 0.25 s |" in tables.render("startup_stages", results)
    sweep = tables.render("startup_sweep", results)
    assert "| one `raysim sweep` of 3 points | 31.0 s (30.0 / 32.0) |" in sweep
    assert "| saved per point after the first | 15.5 s |" in sweep


def test_write_fills_an_emptied_block_and_leaves_a_true_one_alone():
    assert tables.write(TEXT) == TEXT
    emptied = tables.BLOCK.sub(
        lambda b: b["head"] + b["end"] if b["name"] == "network" else b[0], TEXT
    )
    assert tables.check(emptied)[0] == ["network: differs from bench_network.json"]
    assert tables.write(emptied) == TEXT


def test_the_command_names_a_stale_block_and_write_mends_it(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "BENCHMARKS.md"
    row = next(r for r in TEXT.splitlines() if r.startswith("| 1 GbE | 2 |"))
    doc.write_text(TEXT.replace(row, row.replace("| 1 GbE |", "| 1 GbE, edited |"), 1))
    monkeypatch.setattr(tables, "DOC", doc)
    assert tables.main(["--check"]) == 1
    assert "network: differs from bench_network.json" in capsys.readouterr().out
    assert tables.main(["--write"]) == 0
    assert doc.read_text() == TEXT
    assert tables.main(["--check"]) == 0
