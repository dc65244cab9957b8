"""The benchmark suite runs end to end at tiny sizes and writes well-formed results.

Only the structure is checked: timings on a shared machine are never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras")
pytest.importorskip("sklearn")

import bench.__main__ as cli  # noqa: E402 - bench/ is on pytest's pythonpath, not installed
from bench import event_log, fit_overhead, hook_cost, plots, report, subscriber_cost  # noqa: E402

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

TINY: dict[str, dict[str, Any]] = {
    "memory": {"events": 20_000, "repeats": 1, "sample_every": 5000},
    "hook_cost": {"repeats": 2, "samples": 3, "chunk": 50, "warmup": 1},
    "fit_overhead": {"epochs": 3, "repeats": 1, "slow_epochs": 3, "slow_repeats": 1, "rows": 256},
    "subscriber_cost": {"pairs": 3, "block_pairs": 1, "rows": 256, "resamples": 50},
    "throughput": {"repeats": 2, "events": 2000, "deliveries": 20_000, "warmup": 100},
    "event_log": {"repeats": 2, "events": 3000, "batch": 100, "flush_every": 1000, "bus_events": 2000},
    "scaling": {"repeats": 1, "max_subscribers": 4, "events": 2000, "deliveries": 8000, "rates": 3, "duration_s": 0.05},
}

Run = tuple[Path, dict[str, Any], str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``python -m bench --quick --out DIR`` with the quick sizes shrunk to tiny."""
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(cli.SIZES, "quick", TINY)
        assert cli.main(["--quick", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    return out, results, (out / "results.md").read_text()


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def spread_ok(s: dict[str, float]) -> bool:
    return all(positive(s[k]) for k in ("median", "min", "max")) and s["min"] <= s["median"] <= s["max"]


def test_writes_files_with_machine_and_command(run: Run) -> None:
    out, results, markdown = run
    expected = {"results.json", "results.md"} | ({"scaling.png"} if HAS_MATPLOTLIB else set())
    assert {p.name for p in out.iterdir()} == expected
    assert results["mode"] == "quick"
    assert results["command"] == f"python -m bench --quick --out {out}"
    assert results["measured"] == list(cli.MEASUREMENTS)
    machine = results["machine"]
    assert machine["cpu"] and positive(machine["cores"]) and positive(machine["usable_cores"])
    assert machine["python"] and machine["tensorflow"] and machine["keras"]
    assert positive(results["wall_s"])
    for name in cli.MEASUREMENTS:
        assert positive(results[name]["wall_s"]), name
    for row in ("| command |", "| CPU |", "| python |", "| tensorflow |", "| keras |"):
        assert row in markdown
    assert markdown.count("| variant |") == 2


def test_budgets_table_comes_first(run: Run) -> None:
    _, results, markdown = run
    rows = results["budgets"]
    assert len(rows) == 9
    for row in rows:
        assert row["what"] and row["budget"] and row["measured"]
        assert row["met"] is None or isinstance(row["met"], bool)
        assert f"| {row['what']} | {row['budget']} |" in markdown
    log = [r for r in rows if "event log" in r["what"]]
    assert len(log) == 2
    if event_log.available():
        assert all(isinstance(r["met"], bool) for r in rows)
    else:
        assert all(r["met"] is None and r["measured"] == "not measured: no event log yet" for r in log)
        assert all(isinstance(r["met"], bool) for r in rows if r not in log)
    assert markdown.index("## Budgets") < markdown.index("## Machine and command") < markdown.index("## Per-hook")
    verdicts = markdown.count("| met |") + markdown.count("| **not met** |")
    assert verdicts + markdown.count("| not measured |") == 9


def test_budget_rows_without_measurements() -> None:
    rows = report.budgets({})
    assert len(rows) == 9 and all(r["met"] is None for r in rows)
    assert all(r["measured"].startswith("not measured") for r in rows)


def test_hook_cost_figures(run: Run) -> None:
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


def test_fit_overhead_figures(run: Run) -> None:
    _, results, markdown = run
    fit = results["fit_overhead"]
    assert fit["config"]["rows"] == 256
    ran, skipped = set(fit["variants"]), set(fit["skipped"])
    assert ran | skipped == set(fit_overhead.VARIANTS) and not ran & skipped
    assert skipped <= {"wandb_batch"}
    assert ("wandb_batch" in ran) == (importlib.util.find_spec("wandb") is not None)
    for name, v in fit["variants"].items():
        for key in (
            "ratio_median",
            "steady_ratio_median",
            "steady_ratio_min",
            "steady_ratio_max",
            "steady_s_median",
            "baseline_steady_s_median",
            "ratio_min",
            "ratio_max",
            "fastest_ratio",
            "cpu_ratio_median",
            "fit_s_median",
            "baseline_fit_s_median",
            "hook_ms_per_fit_median",
            "hook_share_median",
        ):
            assert positive(v[key]), (name, key)
        assert v["pairs"] == len(v["ratios"]) == len(v["steady_ratios"]) == 1
        assert v["steady_s_median"] < v["fit_s_median"]  # a part of the fit: epochs 2 to the last
        assert v["hook_calls_per_fit"] > 0
        if name == "keras_standard" and importlib.util.find_spec("tensorboard") is None:
            assert v["batch_hook_us_median"] is None  # without TensorBoard, none of its callbacks has batch hooks
        else:
            assert positive(v["batch_hook_us_median"]), name  # every other variant overrides a batch hook
        if name in ("sync_sleep_10ms", "keras_batch_noop"):  # they have no epoch hooks
            assert v["epoch_hook_us_median"] is None
        else:
            assert positive(v["epoch_hook_us_median"]), name
        assert v["label"] in markdown
        assert isinstance(v["notes"], list)
    for name in skipped:
        assert fit["skipped"][name]["reason"] in markdown
    assert fit["variants"]["sync_sleep_10ms"]["bus"] is None and fit["variants"]["keras_batch_noop"]["bus"] is None
    assert fit["variants"]["sync_sleep_10ms"]["loop_cpu_us_per_step"] is None
    assert fit["variants"]["bridge_0"]["loop_cpu_us_per_step"] >= 0
    failing = fit["variants"]["bridge_failing"]
    assert failing["bus"]["failed"] > 0 and failing["bus_warned_on_close"]
    assert failing["log_records"] > 0
    for name in fit_overhead.BUDGETED:
        v = fit["variants"][name]
        assert v["bus"]["published"] > 0 and isinstance(v["within_budget"], bool)
    standard = fit["variants"]["bridge_standard"]
    assert standard["bus"]["failed"] == 0 and standard["bus"]["delivered"] > 0
    for name in fit_overhead.PEERS:
        if name in ran:
            assert fit["variants"][name]["bus"] is None and fit["variants"][name]["within_budget"] is None


def test_subscriber_cost_figures(run: Run) -> None:
    _, results, markdown = run
    sc = results["subscriber_cost"]
    assert set(sc["runs"]) == {f"{s}/{m}" for s in subscriber_cost.SUBJECTS for m in subscriber_cost.MODES}
    for v in sc["runs"].values():
        lagged = subscriber_cost.SUBJECTS[v["subject"]].lag_s > 0
        assert v["pairs"] == (1 if lagged else 3)
        if lagged:  # blocks twice as long as the lag, the first half left out
            assert v["block_epochs"] == 2 * v["washout_epochs"]
            assert (
                v["washout_epochs"] * v["epoch_ms_median"] / 1000 >= 0.5 * subscriber_cost.SUBJECTS[v["subject"]].lag_s
            )
        else:
            assert (v["block_epochs"], v["washout_epochs"]) == (1, 0)
        assert v["epochs"] >= subscriber_cost.SKIPPED_EPOCHS + 2 * v["pairs"] * v["block_epochs"]
        low, high = v["ci95"]
        assert positive(v["ratio_median"]) and positive(v["epoch_ms_median"])
        assert low <= v["ratio_median"] <= high
        assert isinstance(v["within_budget"], bool) and v["label"] in markdown
        if v["subject"] == "sockets_64":  # every client was served: it got bytes, and its CPU was measured
            assert positive(v["client_bytes_min"]) and v["client_cpu_share"] >= 0
        else:
            assert v["client_bytes_min"] is None
    assert "A subscriber's own cost" in markdown
    assert "64 clients" in markdown


class FakeBus:
    def __init__(self) -> None:
        self.live: set[int] = set()
        self.count = 0

    def subscribe(self, handler: Any, **options: Any) -> int:
        self.count += 1
        self.live.add(self.count)
        return self.count

    def unsubscribe(self, subscription: int) -> None:
        self.live.remove(subscription)


def test_toggle_subscribes_in_abba_order_and_pairs_with_against_without() -> None:
    bus = FakeBus()
    toggle = subscriber_cost.Toggle(bus, "async_10ms", pairs=3)
    seen = []
    for epoch in range(11):
        assert not toggle.done
        toggle.epoch_begins(epoch)
        seen.append(bool(bus.live))
    assert seen == ([True, False, False, True] * 3)[:11]
    assert toggle.done  # epochs 4 to 9 hold the 3 pairs; epoch 10's begin ends the last
    # Epochs with the subject take 2 s, without 1 s: every pair says 2x, whichever comes first.
    toggle.begins = [0.0]
    for with_subject in toggle.with_subject[:-1]:
        toggle.begins.append(toggle.begins[-1] + (2.0 if with_subject else 1.0))
    assert toggle.pair_ratios() == [2.0, 2.0, 2.0]


def test_a_lagging_subject_is_toggled_in_blocks_and_its_cost_counted_where_it_is_paid() -> None:
    """The socket server pays for an epoch's events up to a flush interval later.
    Here its cost lands two epochs late: toggled epoch by epoch it would fall as
    often in epochs without it as with it; in blocks with a wash-out it shows whole."""
    bus = FakeBus()
    lag_s = subscriber_cost.SUBJECTS["sockets_64"].lag_s
    epoch_s = lag_s / 3.5  # the warm-up times epochs at this: a wash-out of 4 epochs
    toggle: subscriber_cost.Toggle

    def clock() -> float:
        """Each epoch lasts epoch_s, plus half that when the subject was live two epochs before."""
        if not toggle.begins:
            return 0.0
        earlier = len(toggle.with_subject) - 3
        late_cost = 0.5 * epoch_s if earlier >= 0 and toggle.with_subject[earlier] else 0.0
        return toggle.begins[-1] + epoch_s + late_cost

    toggle = subscriber_cost.Toggle(bus, "sockets_64", pairs=3, clock=clock)
    epoch = 0
    while not toggle.done:
        toggle.epoch_begins(epoch)
        epoch += 1
    assert (toggle.block, toggle.washout) == (8, 4)
    assert epoch == subscriber_cost.SKIPPED_EPOCHS + 2 * 3 * 8 + 1
    blocks = [toggle.with_subject[e] for e in range(subscriber_cost.SKIPPED_EPOCHS, epoch - 1, 8)]
    assert blocks == [True, False, False, True, True, False]
    assert toggle.pair_ratios() == pytest.approx([1.5, 1.5, 1.5])


def test_throughput_figures(run: Run) -> None:
    _, results, markdown = run
    tp = results["throughput"]
    lossless = {k: v for k, v in tp["runs"].items() if v["setting"] == "lossless"}
    assert len(lossless) == 2 * 3 * 2  # backends x subscriber counts x producers
    for key, v in lossless.items():
        assert v["repeats"] == 2, key
        assert v["received_min"] == [v["events"]] * 2, key  # every subscriber received every event
        assert v["dropped"] == [0, 0] and v["dropped_at_ingress"] == [0, 0], key
        for figure in ("events_per_s", "publish_events_per_s", "producer_us_per_publish", "loop_cpu_us_per_event"):
            assert spread_ok(v[figure]), (key, figure)
    defaults = [v for v in tp["runs"].values() if v["setting"] == "defaults"]
    assert {(v["backend"], v["subscribers"]) for v in defaults} == {(b, n) for b in ("asyncio", "trio") for n in (1, 8)}
    for v in defaults:
        if v["subscribers"] == 1:  # each event was received, dropped by the subscriber, or refused at ingress
            accounted = zip(v["received_min"], v["dropped"], v["dropped_at_ingress"], strict=True)
            assert [sum(figures) for figures in accounted] == [v["events"]] * 2
    for kind in ("trio_vs_asyncio", "prebuilt_vs_fresh"):
        assert len(tp["ratios"][kind]) == 6
        assert all(r["pairs"] == 2 and spread_ok(r) for r in tp["ratios"][kind].values())
    assert set(tp["budgets"]) == {"1", "8"}
    assert all(isinstance(b["met"], bool) for b in tp["budgets"].values())
    assert "## Events per second" in markdown and "| trio / asyncio |" in markdown


def test_event_log_figures(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, results, markdown = run
    log = results["event_log"]
    assert "## Event log append rate" in markdown
    if not event_log.available():
        assert log["skipped"] == event_log.MISSING
        return
    for figure in ("append_events_per_s", "append_mb_per_s", "bus_events_per_s"):
        assert spread_ok(log[figure]), figure
    assert len(log["runs"]["append"]) == len(log["runs"]["bus"]) == 2
    assert positive(log["bytes_per_event"]) and isinstance(log["within_budget"], bool)
    monkeypatch.setattr(event_log, "available", lambda: False)
    skipped = event_log.measure(repeats=1)
    assert skipped["skipped"] == event_log.MISSING
    row = [r for r in report.budgets({"event_log": skipped}) if "event log" in r["what"]][0]
    assert row["measured"] == "not measured: no event log yet" and row["met"] is None


def test_memory_figures(run: Run) -> None:
    _, results, markdown = run
    mem = results["memory"]
    assert mem["config"]["events"] == 20_000 and len(mem["runs"]) == 1
    r = mem["runs"][0]
    assert r["settled"] and r["events"] == 20_000
    assert r["dropped_by_subscriber"] + r["dropped_at_ingress"] + r["buffered_while_stalled"] == 20_000
    assert r["received_after_release"] == r["buffered_while_stalled"] + 1  # the first event, then the buffer
    assert len(r["growth_samples_mb"]) == 20_000 // 5000 + 1
    assert isinstance(mem["within_budget"], bool) and mem["peak_growth_mb_max"] >= 0
    assert "not the budget's 1,000,000" in markdown


def test_scaling_figures_and_plot(run: Run) -> None:
    out, results, markdown = run
    sc = results["scaling"]
    assert [p["subscribers"] for p in sc["subscribers"]] == [1, 2, 4]
    assert [p["target_rate"] for p in sc["rates"]] == [1000, 2000, 4000]
    for p in sc["subscribers"]:
        for figure in ("wall_us_per_event", "loop_cpu_us_per_event", "producer_us_per_publish"):
            assert spread_ok(p[figure]), (p["subscribers"], figure)
    for p in sc["rates"]:
        assert spread_ok(p["achieved_rate"]) and spread_ok(p["producer_us_per_publish"])
    if HAS_MATPLOTLIB:
        assert results["plots"]["scaling"] == {"path": "scaling.png", "note": None}
        assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "](scaling.png)" in markdown
    else:
        assert results["plots"]["scaling"]["note"] == plots.MISSING and plots.MISSING in markdown


def test_plot_skipped_without_matplotlib(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, results, _ = run
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    drawn = plots.draw(results, tmp_path)
    assert drawn == {"scaling": {"path": None, "note": plots.MISSING}}
    assert list(tmp_path.iterdir()) == []
    assert f"Plot: {plots.MISSING}" in report.render({**results, "plots": drawn})
