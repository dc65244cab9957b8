"""The benchmark suite runs end to end at tiny sizes and writes well-formed results.

Only the structure is checked: timings on a shared machine are never asserted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras")
pytest.importorskip("sklearn")

import bench.__main__ as cli  # noqa: E402 - bench/ is on pytest's pythonpath, not installed
from bench import fit_overhead, hook_cost  # noqa: E402

TINY = {
    "hook_cost": {"repeats": 2, "samples": 3, "chunk": 50, "warmup": 1},
    "fit_overhead": {"epochs": 1, "repeats": 1, "slow_epochs": 1, "slow_repeats": 1, "rows": 256},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """``python -m bench --quick --out DIR`` with the quick sizes shrunk to tiny."""
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(cli.SIZES, "quick", TINY)
        assert cli.main(["--quick", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    return out, results, (out / "results.md").read_text()


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_writes_both_files_with_machine_and_command(run: tuple[Path, dict[str, Any], str]) -> None:
    out, results, markdown = run
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]
    assert results["mode"] == "quick"
    assert results["command"] == f"python -m bench --quick --out {out}"
    machine = results["machine"]
    assert machine["cpu"] and positive(machine["cores"]) and positive(machine["usable_cores"])
    assert machine["python"] and machine["tensorflow"] and machine["keras"]
    assert positive(results["wall_s"])
    for row in ("| command |", "| CPU |", "| python |", "| tensorflow |", "| keras |"):
        assert row in markdown
    assert markdown.count("| variant |") == 2


def test_hook_cost_figures(run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, markdown = run
    hook = results["hook_cost"]
    assert hook["config"]["calls_per_sample"] == TINY["hook_cost"]["chunk"]
    assert set(hook["variants"]) == set(hook_cost.VARIANTS)
    for name, v in hook["variants"].items():
        for key in ("median_us", "p99_us", "mean_us", "repeat_median_min_us", "repeat_median_max_us"):
            assert positive(v[key]), (name, key)
        assert v["repeat_median_min_us"] <= v["repeat_median_max_us"]
        assert v["label"] in markdown
        if name == "keras_noop":
            assert v["bus"] is None and v["loop_cpu_share"] is None
        else:
            assert v["bus"]["published"] >= 2 * 3 * 50
            assert 0 <= v["loop_cpu_share"]
            assert len(v["delivered_while_timed"]) == TINY["hook_cost"]["repeats"]
    assert isinstance(hook["variants"]["bridge_8"]["within_budget"], bool)
    assert len(hook["variants"]["bridge_8"]["fanout_backlog_at_end"]) == TINY["hook_cost"]["repeats"]


def test_fit_overhead_figures(run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, markdown = run
    fit = results["fit_overhead"]
    assert fit["config"]["rows"] == 256
    assert set(fit["variants"]) == set(fit_overhead.VARIANTS)
    for name, v in fit["variants"].items():
        for key in (
            "ratio_median",
            "ratio_min",
            "ratio_max",
            "cpu_ratio_median",
            "fit_s_median",
            "baseline_fit_s_median",
        ):
            assert positive(v[key]), (name, key)
        assert v["pairs"] == len(v["ratios"]) == 1
        assert v["label"] in markdown
    assert fit["variants"]["sync_sleep_10ms"]["bus"] is None
    assert fit["variants"]["sync_sleep_10ms"]["loop_cpu_us_per_step"] is None
    assert fit["variants"]["bridge_0"]["loop_cpu_us_per_step"] >= 0
    failing = fit["variants"]["bridge_failing"]
    assert failing["bus"]["failed"] > 0 and failing["bus_warned_on_close"]
    assert failing["log_records"] > 0
    slow = fit["variants"]["bridge_async_10ms"]
    assert slow["bus"]["published"] > 0 and isinstance(slow["within_budget"], bool)
