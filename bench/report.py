"""The results as Markdown tables and raw JSON, with the machine they came from.

The budgets come first: each budget of the design notes beside the figure
measured for it and whether it was met (a budget not met is reported as
such). Figures from a shared 2-core machine mean little without the machine
and the command beside them, so both follow.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def _accelerators() -> list[str]:
    """The GPUs TensorFlow sees: the fit figures are for that device when there is one."""
    try:
        import tensorflow as tf

        return [device.name for device in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - a report must not fail for want of a device list
        return []


def machine() -> dict[str, Any]:
    """CPU model, cores, and the versions that shape the figures."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cpu": cpu,
        "accelerators": _accelerators(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "tensorflow": version("tensorflow") or version("tensorflow-cpu"),
        "keras": version("keras"),
        "msgspec": version("msgspec"),
        "anyio": version("anyio"),
        "trio": version("trio"),
        "wandb": version("wandb"),
        "tensorboard": version("tensorboard"),
        "matplotlib": version("matplotlib"),
        "platform": platform.platform(),
    }


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _n(value: float | None) -> str:
    """A count or rate with thousands separators."""
    return "-" if value is None else f"{value:,.0f}"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("within" if ok else "**over**")


def _bus(counts: dict[str, int] | None, keys: tuple[str, ...]) -> str:
    return "-" if not counts else " / ".join(str(counts.get(k, 0)) for k in keys)


def _spread(s: dict[str, float], fmt: Any = _n, unit: str = "") -> str:
    """``median (min-max)``: how every repeated figure is shown."""
    return f"{fmt(s['median'])}{unit} ({fmt(s['min'])}-{fmt(s['max'])})"


def _step_ms(fit: dict[str, Any]) -> float:
    """Baseline seconds per step in steady epochs, from the variant with the most epochs per fit."""
    c = fit["config"]
    v = max(fit["variants"].values(), key=lambda v: v["epochs"])
    return 1000 * v["baseline_steady_s_median"] / ((v["epochs"] - 2) * c["steps_per_epoch"])


NOT_MEASURED = "not measured in this run"


def budgets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every budget of the design notes, the figure measured for it, and whether it was met."""
    rows: list[dict[str, Any]] = []

    def row(what: str, budget: str, measured: str, met: bool | None) -> None:
        rows.append({"what": what, "budget": budget, "measured": measured, "met": met})

    hook = results.get("hook_cost")
    bridges = (
        {k.removeprefix("bridge_"): v for k, v in hook["variants"].items() if k.startswith("bridge_")} if hook else {}
    )
    if bridges:
        medians = " / ".join(_f(v["median_us"]) for v in bridges.values())
        labels = " / ".join(bridges)
        in_fit = (results.get("fit_overhead") or {}).get("variants", {}).get("bridge_0", {})
        context = (
            f"; inside a real `fit`: {in_fit['batch_hook_us_median']:.1f} us per batch hook, mean"
            if in_fit.get("batch_hook_us_median")
            else ""
        )
        row(
            "bridge cost on the training thread per hook (struct + hand-off)",
            "<= 2 us median",
            f"{medians} us ({labels} subscribers; median of tight-loop samples{context})",
            all(v["within_budget"] for v in bridges.values()),
        )
    else:
        row("bridge cost on the training thread per hook (struct + hand-off)", "<= 2 us median", NOT_MEASURED, None)

    fit = results.get("fit_overhead")
    own = (results.get("subscriber_cost") or {}).get("runs", {})
    for key, subject, what in (
        ("bridge_standard", "standard", "`fit` wall time, bus + standard subscribers vs no callbacks"),
        ("bridge_async_10ms", "async_10ms", "`fit` wall time with a subscriber that needs 10 ms per event"),
    ):
        variants = fit["variants"] if fit else {}
        modes = [(mode, variants.get(k)) for mode, k in (("default", key), ("no-sync", f"{key}_deferred"))]
        measured = [(mode, v) for mode, v in modes if v is not None]
        owns = [(mode, own[f"{subject}/{mode}"]) for mode in ("default", "no-sync") if f"{subject}/{mode}" in own]
        if not measured and not owns:
            row(what, "<= 1.02x", NOT_MEASURED, None)
            continue
        parts = [
            f"the subscribers' own cost, {mode} mode: {o['ratio_median']:.3f}x "
            f"(95% interval {o['ci95'][0]:.3f}-{o['ci95'][1]:.3f}, {o['pairs']} epoch pairs)"
            for mode, o in owns
        ] + [
            f"bus + bridge + subscribers vs no callbacks, {mode} mode: {v['steady_ratio_median']:.3f}x steady epochs "
            f"({v['steady_ratio_min']:.2f}-{v['steady_ratio_max']:.2f} over {v['pairs']} pairs)"
            for mode, v in measured
        ]
        # The 10 ms row is about what such a subscriber adds; the standard row about the whole bus.
        judged = [o for _, o in owns] if subject == "async_10ms" and owns else [v for _, v in measured]
        row(what, "<= 1.02x", "; ".join(parts), all(v["within_budget"] for v in judged))

    sockets = [(mode, own[f"sockets_64/{mode}"]) for mode in ("default", "no-sync") if f"sockets_64/{mode}" in own]
    if sockets:
        row(
            "`fit` wall time with a socket server streaming every event to 64 clients",
            "<= 1.02x",
            "; ".join(
                f"{mode} mode: {o['ratio_median']:.3f}x (95% interval {o['ci95'][0]:.3f}-{o['ci95'][1]:.3f}, "
                f"{o['pairs']} pairs of {o['block_epochs']}-epoch blocks; "
                f"each client got >= {_n(o['client_bytes_min'])} bytes)"
                for mode, o in sockets
            ),
            all(o["within_budget"] for _, o in sockets),
        )
    else:
        row("`fit` wall time with a socket server streaming every event to 64 clients", "<= 1.02x", NOT_MEASURED, None)

    tp = results.get("throughput")
    for n, what, budget in (
        ("1", "events/s from one producer thread to one subscriber", ">= 1,000,000"),
        ("8", "events/s to 8 subscribers", ">= 300,000"),
    ):
        b = tp["budgets"].get(n) if tp else None
        if b is None:
            row(what, budget, NOT_MEASURED, None)
            continue
        trio = tp["runs"].get(f"lossless/trio/{n}/fresh")
        other = f"; trio {_n(trio['events_per_s']['median'])}" if trio else ""
        row(
            what,
            budget,
            f"{_spread(b['events_per_s'])} asyncio, end to end, lossless, fresh events{other}",
            b["met"],
        )

    log = results.get("event_log")
    if log and "append_events_per_s" in log:
        row(
            "event log append, batched",
            ">= 1,000,000 events/s",
            f"{_spread(log['append_events_per_s'])} (lists of {log['config']['batch']}, flushed to a file); "
            f"through the bus, end to end: {_n(log['bus_events_per_s']['median'])}",
            log["within_budget"],
        )
        row(
            "event log read",
            ">= 1,000,000 events/s",
            f"{_spread(log['read_events_per_s'])} (typed events, checksums checked)",
            log["read_within_budget"],
        )
    else:
        why = log["skipped"] if log else NOT_MEASURED
        row("event log append, batched", ">= 1,000,000 events/s", why, None)
        row("event log read", ">= 1,000,000 events/s", why, None)

    mem = results.get("memory")
    if mem:
        c = mem["config"]
        runs = mem["runs"]
        scaled = "" if c["events"] >= c["budget_events"] else f" (**{c['events']:,} events, not 1,000,000**)"
        row(
            f"memory with one subscriber stalled for {c['events']:,} events{scaled}",
            "bounded (< 50 MB growth)",
            f"{mem['peak_growth_mb_max']:.1f} MB peak growth (worst of {len(runs)} runs); "
            f"dropped {_n(median_of(runs, 'dropped_by_subscriber'))} by the subscriber, "
            f"{_n(median_of(runs, 'dropped_at_ingress'))} at ingress (medians)",
            mem["within_budget"],
        )
    else:
        row("memory with one subscriber stalled for 1,000,000 events", "bounded (< 50 MB growth)", NOT_MEASURED, None)
    return rows


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _budget_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Budgets",
        "",
        "Each budget of the design notes beside what this run measured (median, min-max over repeats).",
        "",
        "| what | budget | measured | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for r in results.get("budgets") or budgets(results):
        verdict = "not measured" if r["met"] is None else ("met" if r["met"] else "**not met**")
        lines.append(f"| {r['what']} | {r['budget']} | {r['measured']} | {verdict} |")
    return lines


def _machine_lines(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    peers = ", ".join(f"{k} {m[k]}" for k in ("trio", "wandb", "tensorboard", "matplotlib") if m.get(k)) or "-"
    return [
        "## Machine and command",
        "",
        "| | |",
        "| --- | --- |",
        f"| command | `{results['command']}` |",
        f"| mode | {results['mode']} |",
        f"| date (UTC) | {results['date']} |",
        f"| CPU | {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable) |",
        f"| accelerators | {', '.join(m.get('accelerators') or []) or 'none (fit runs on the CPU)'} |",
        f"| python | {m['python']} |",
        f"| tensorflow | {m['tensorflow']} |",
        f"| keras | {m['keras']} |",
        f"| msgspec, anyio | {m['msgspec']}, {m['anyio']} |",
        f"| also installed | {peers} |",
        f"| wall time | {results['wall_s']:.0f} s |",
    ]


def _hook_lines(hook: dict[str, Any]) -> list[str]:
    c = hook["config"]
    lines = [
        "",
        f"## Per-hook cost on the training thread (budget: KerasBridge <= {c['budget_us']:g} us median)",
        "",
        f"`on_train_batch_end(batch, logs={c['logs']})` called in a tight loop: "
        f"{c['repeats']} interleaved repeats x {c['samples_per_repeat']} samples x "
        f"{c['calls_per_sample']} calls; each bus variant in its own running bus. "
        "Median and p99 are over samples (per-call mean of one chunk); "
        "mean is total time / calls, GIL hand-offs to the bus loop and GC pauses included. "
        "Backlog: events published but not yet fanned out to the first subscriber when timing ended.",
        "",
        "| variant | median us | p99 us | mean us | repeat medians us (min-max) "
        "| loop CPU share | full GCs (max ms) | delivered / dropped while timing / max backlog after | budget |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in hook["variants"].values():
        gc = v["gc"]
        delivered = v["delivered_while_timed"]
        backlogs = v["fanout_backlog_at_end"]
        backlog = "-" if backlogs is None else max(backlogs)
        flow = "-" if delivered is None else f"{sum(delivered)} / {sum(v['dropped_while_timed'])} / {backlog}"
        share = "-" if v["loop_cpu_share"] is None else f"{v['loop_cpu_share']:.0%}"
        lines.append(
            f"| {v['label']} | {_f(v['median_us'])} | {_f(v['p99_us'])} | {_f(v['mean_us'])} "
            f"| {_f(v['repeat_median_min_us'])}-{_f(v['repeat_median_max_us'])} | {share} "
            f"| {gc['full_collections']} ({gc['full_pause_ms_max']:.0f}) | {flow} "
            f"| {_verdict(v['within_budget'])} |"
        )
    return lines


def _fit_lines(fit: dict[str, Any]) -> list[str]:
    c = fit["config"]
    lines = [
        "",
        f"## `fit` wall time vs `fit` with no callbacks (budget: standard subscribers and "
        f"async 10 ms subscriber <= {c['budget_ratio']:g}x)",
        "",
        f"MLP on {c['data']} ({c['rows']} rows, batch {c['batch_size']}, {c['steps_per_epoch']} steps/epoch), "
        f"`verbose=0`, data from {c['pipeline']}; ratios per pair (variant fit / baseline fit, order alternating), "
        f"median and min-max over pairs. Bus closing (timeout {c['close_timeout_s']:g} s) is not timed. "
        "Steady: from the second epoch's begin to the last epoch's, so whole epochs with every hook and "
        "barrier and none of `fit`'s start-up, whose time varies several-fold on its own; "
        "the budgets are judged on it. "
        f"A baseline step took {_step_ms(fit):.2f} ms here (steady epochs, epoch hooks included); "
        "the cost of a synchronous 10 ms callback scales with 10 ms / step time. "
        "Fastest: the fastest variant fit / the fastest baseline fit. "
        "In callbacks: the training thread's time inside the callbacks' own hooks per fit "
        "and its share of the fit; per call of the batch hooks and of the epoch hooks (where the bus's "
        "barriers wait for control subscribers). "
        "CPU ratio: process CPU time (all threads) of the pair; "
        "bus loop CPU: what the bus's own thread used per training step.",
        "",
        "| variant | epochs | pairs | steady ratio median | steady min-max | whole-fit ratio median "
        "| whole-fit min-max | fastest | fit s / baseline s "
        "| in callbacks ms/fit (share) | batch / epoch hook us/call | CPU ratio median | bus loop CPU us/step "
        "| bus: published / delivered / dropped / failed / undelivered | bus log records | close s | budget |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    keys = ("published", "delivered", "dropped", "failed", "undelivered")
    for v in fit["variants"].values():
        lines.append(
            f"| {v['label']} | {v['epochs']} | {v['pairs']} | {_f(v['steady_ratio_median'], 3)}x "
            f"| {_f(v['steady_ratio_min'], 3)}-{_f(v['steady_ratio_max'], 3)} | {_f(v['ratio_median'], 3)}x "
            f"| {_f(v['ratio_min'], 3)}-{_f(v['ratio_max'], 3)} | {_f(v['fastest_ratio'], 3)}x "
            f"| {_f(v['fit_s_median'])} / {_f(v['baseline_fit_s_median'])} "
            f"| {_f(v['hook_ms_per_fit_median'], 1)} ({v['hook_share_median']:.1%}) "
            f"| {_f(v['batch_hook_us_median'], 1)} / {_f(v['epoch_hook_us_median'], 0)} "
            f"| {_f(v['cpu_ratio_median'], 3)}x "
            f"| {_f(v['loop_cpu_us_per_step'], 0)} | {_bus(v['bus'], keys)} "
            f"| {'-' if v['log_records'] is None else v['log_records']} "
            f"| {_f(v['close_s_median'])} | {_verdict(v['within_budget'])} |"
        )
    notes = [f"{v['label']}: {note}" for v in fit["variants"].values() for note in v.get("notes", [])]
    notes += [f"{s['label']}: {s['reason']}" for s in fit.get("skipped", {}).values()]
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return lines


BUDGETED_SUBJECTS = ("async_10ms", "sockets_64")


def _subscriber_cost_lines(sc: dict[str, Any]) -> list[str]:
    c = sc["config"]
    lines = [
        "",
        f"## A subscriber's own cost, epoch by epoch (budget: the 10 ms subscriber and a socket server with "
        f"64 clients <= {c['budget_ratio']:g}x)",
        "",
        f"One `fit` per row ({c['steps_per_epoch']} steps an epoch, batch {c['batch_size']}) with the "
        f"bus and the bridge throughout; the subscribers are subscribed for some epochs and not for others "
        f"({c['pattern']}), so adjacent epochs pair up, one with and one without. Ratio: the epoch with / the "
        f"epoch without, median over pairs, the first {c['skipped_epochs']} epochs left out; the interval is a "
        f"bootstrap ({c['resamples']} resamples) of the median. Adjacent epochs share the machine's state, so "
        "this is far steadier than whole-fit pairs. The socket server sends what it holds every "
        f"{c['flush_interval_s']:g} s, so it pays for an epoch's events in later epochs: it is toggled in "
        "blocks twice as long as that lag, the first half of each block left out (a wash-out), and each pair "
        "of blocks gives the ratio of their mean measured epochs.",
        "",
        "| subscribers | mode | pairs | block (wash-out), epochs | ratio median | 95% interval | ratio mean "
        "| epoch ms | bytes to each client (min) | clients' CPU | budget |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in sc["runs"].values():
        verdict = _verdict(v["within_budget"]) if v["subject"] in BUDGETED_SUBJECTS else ""
        sockets = v.get("client_bytes_min") is not None
        lines.append(
            f"| {v['label']} | {v['mode']} | {v['pairs']} | {v['block_epochs']} ({v['washout_epochs']}) "
            f"| {v['ratio_median']:.3f}x "
            f"| {v['ci95'][0]:.3f}-{v['ci95'][1]:.3f} | {v['ratio_mean']:.3f}x | {v['epoch_ms_median']:.1f} "
            f"| {_n(v['client_bytes_min']) if sockets else '-'} "
            f"| {format(v['client_cpu_share'], '.1%') if sockets else '-'} | {verdict} |"
        )
    return lines


def _throughput_lines(tp: dict[str, Any]) -> list[str]:
    c = tp["config"]
    lines = [
        "",
        "## Events per second through the bus (budgets: >= 1,000,000/s to one subscriber, >= 300,000/s to 8)",
        "",
        f"One producer thread publishes `{c['event']}` as fast as it can; trivial async subscribers count. "
        "End to end: from the first publish until every subscriber has received every event. "
        f"`max_backlog` exceeds the events published and subscribers are lossless, so this is delivery, "
        f"not load shedding (checked: each subscriber received every event). "
        f"{c['repeats']} repeats; with 64 subscribers fewer events per run "
        f"(at most {c['deliveries_cap']:,} deliveries). Publish only: events/s the producer achieved "
        "(its loop's wall time; it shares the GIL with the bus loop). "
        "Loop CPU: the bus thread's CPU time per event. The budgets are judged on asyncio, the default backend.",
        "",
        "| backend | subscribers | producer | events/run | events/s end to end | publish only events/s "
        "| producer us/publish | loop CPU us/event | budget |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    budgets_by_n = tp.get("budgets", {})
    for v in tp["runs"].values():
        if v["setting"] != "lossless":
            continue
        b = budgets_by_n.get(str(v["subscribers"]))
        judged = b is not None and v["backend"] == c["budget_backend"] and v["producer"] == "fresh"
        lines.append(
            f"| {v['backend']} | {v['subscribers']} | {v['producer']} | {_n(v['events'])} "
            f"| {_spread(v['events_per_s'])} | {_spread(v['publish_events_per_s'])} "
            f"| {_spread(v['producer_us_per_publish'], _f)} | {_spread(v['loop_cpu_us_per_event'], _f)} "
            f"| {_verdict(b['met']) if judged else ''} |"
        )
    for why in tp.get("skipped_backends", {}).values():
        lines += ["", f"Note: {why}."]
    ratios = tp.get("ratios", {})
    if ratios.get("trio_vs_asyncio") or ratios.get("prebuilt_vs_fresh"):
        lines += [
            "",
            "Ratios of events/s, pair by pair (the two runs of a pair back to back, in the same repeat):",
            "",
            "| ratio | runs | median | min-max | pairs |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for key, r in ratios.get("trio_vs_asyncio", {}).items():
            n, producer = key.split("/")
            lines.append(
                f"| trio / asyncio | {n} subscribers, {producer} | {r['median']:.2f} "
                f"| {r['min']:.2f}-{r['max']:.2f} | {r['pairs']} |"
            )
        for key, r in ratios.get("prebuilt_vs_fresh", {}).items():
            backend, n = key.split("/")
            lines.append(
                f"| prebuilt / fresh | {backend}, {n} subscribers | {r['median']:.2f} "
                f"| {r['min']:.2f}-{r['max']:.2f} | {r['pairs']} |"
            )
    defaults = [v for v in tp["runs"].values() if v["setting"] == "defaults"]
    if defaults:
        lines += [
            "",
            "With the bus's default settings (`max_backlog=65536`, `buffer_size=1024`, not lossless) the same "
            "producer is shed instead of queued: events/s counts what each subscriber received, up to a "
            "`TrainEnd` marker (never dropped). Drops are medians per run (ingress: refused by the bus; "
            "subscribers: summed over subscribers).",
            "",
            "| backend | subscribers | events/run | delivered events/s | publish only events/s "
            "| received per subscriber (median) | dropped at ingress | dropped by subscribers |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for v in defaults:
            lines.append(
                f"| {v['backend']} | {v['subscribers']} | {_n(v['events'])} | {_spread(v['events_per_s'])} "
                f"| {_spread(v['publish_events_per_s'])} | {_n(statistics.median(v['received_min']))} "
                f"| {_n(statistics.median(v['dropped_at_ingress']))} | {_n(statistics.median(v['dropped']))} |"
            )
    return lines


def _memory_lines(mem: dict[str, Any]) -> list[str]:
    c = mem["config"]
    scaled = (
        ""
        if c["events"] >= c["budget_events"]
        else f" This run published {c['events']:,} events, not the budget's 1,000,000."
    )
    lines = [
        "",
        "## Memory with one subscriber stalled (budget: < 50 MB growth)",
        "",
        f"One subscriber awaits an `anyio.Event` from its first event until all {c['events']:,} batch events "
        f"have been published (fresh `TrainBatchEnd`s, one thread, as fast as it can); {c['settings']}. "
        f"Resident memory (`/proc/self/statm`) every {c['sample_every']:,} publishes; growth from just "
        "before the first publish. Settled: once the loop has taken every event in. "
        f"Each run in a fresh interpreter.{scaled}",
        "",
        "| run | publish s | peak growth MB | settled growth MB | ru_maxrss growth MB "
        "| dropped by the subscriber | dropped at ingress | buffered while stalled | received after release |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, r in enumerate(mem["runs"], 1):
        lines.append(
            f"| {i} | {_f(r['publish_s'])} | {_f(r['peak_growth_mb'], 1)} | {_f(r['settled_growth_mb'], 1)} "
            f"| {_f(r['maxrss_growth_mb'], 1)} | {_n(r['dropped_by_subscriber'])} | {_n(r['dropped_at_ingress'])} "
            f"| {_n(r['buffered_while_stalled'])} | {_n(r['received_after_release'])} |"
        )
    lines += [
        "",
        f"Worst peak growth: {mem['peak_growth_mb_max']:.1f} MB ({_verdict(mem['within_budget'])} the budget).",
    ]
    return lines


def _event_log_lines(log: dict[str, Any]) -> list[str]:
    c = log["config"]
    lines = ["", "## Event log append rate (budget: >= 1,000,000 events/s, batched)", ""]
    if "skipped" in log:
        return [*lines, log["skipped"]]
    return [
        *lines,
        f"`EventLog.append` of {c['events']:,} `TrainBatchEnd` events in lists of {c['batch']} (as the bus hands "
        f"them to a batched subscriber), flushed every {c['flush_every']:,} events and at the end, to a file "
        f"(no fsync). Through the bus: one producer thread, {c['bus_events']:,} fresh events, the log as the only "
        "subscriber, until it has taken in the last one (closing flushes it). Every log is read back and "
        f"counted. {c['repeats']} repeats each, alternating; median (min-max).",
        "",
        "| what | events/s | MB/s | bytes/event | budget |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| append + flush | {_spread(log['append_events_per_s'])} | {_spread(log['append_mb_per_s'], _f)} "
        f"| {log['bytes_per_event']:.1f} | {_verdict(log['within_budget'])} |",
        f"| producer -> bus -> EventLog, end to end | {_spread(log['bus_events_per_s'])} | - | - | |",
        f"| read back (`EventLog.read`, typed events) | {_spread(log['read_events_per_s'])} | - | - "
        f"| {_verdict(log['read_within_budget'])} |",
    ]


def _scaling_lines(sc: dict[str, Any], plot: dict[str, Any] | None) -> list[str]:
    c = sc["config"]
    lines = [
        "",
        "## Per-event cost as subscribers and rate double",
        "",
        f"{c['backend']}, {c['repeats']} repeats, median (min-max). Subscribers: the throughput runs "
        "(producer as fast as it can, lossless counting subscribers); per event: end-to-end wall time, "
        "the bus loop thread's CPU time (and per delivery), the producer's time per publish.",
        "",
        "| subscribers | events/run | wall us/event | loop CPU us/event | loop CPU us/delivery "
        "| producer us/publish | events/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in sc["subscribers"]:
        lines.append(
            f"| {p['subscribers']} | {_n(p['events'])} | {_spread(p['wall_us_per_event'], _f)} "
            f"| {_spread(p['loop_cpu_us_per_event'], _f)} | {_spread(p['loop_cpu_us_per_delivery'], _f)} "
            f"| {_spread(p['producer_us_per_publish'], _f)} | {_spread(p['events_per_s'])} |"
        )
    lines += [
        "",
        f"Rate: a paced producer (bursts of what is due, sleeping in between) for about {c['duration_s']:g} s "
        f"per point, {c['rate_subscribers']} subscriber. Loop CPU per event includes the loop's polling "
        "while events flow; producer us/publish is the time inside bursts per event.",
        "",
        "| target events/s | achieved events/s | events/run | loop CPU us/event | loop CPU share "
        "| producer us/publish |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in sc["rates"]:
        lines.append(
            f"| {_n(p['target_rate'])} | {_spread(p['achieved_rate'])} | {_n(p['events'])} "
            f"| {_spread(p['loop_cpu_us_per_event'], _f)} | {p['loop_cpu_share']['median']:.1%} "
            f"| {_spread(p['producer_us_per_publish'], _f)} |"
        )
    if plot and plot.get("path"):
        lines += ["", f"![per-event cost as subscribers and rate double]({plot['path']})"]
    elif plot:
        lines += ["", f"Plot: {plot['note']}"]
    return lines


def render(results: dict[str, Any]) -> str:
    """The Markdown report."""
    lines = ["# keras-eventbus benchmark results", "", *_budget_lines(results), "", *_machine_lines(results)]
    if results.get("hook_cost"):
        lines += _hook_lines(results["hook_cost"])
    if results.get("fit_overhead"):
        lines += _fit_lines(results["fit_overhead"])
    if results.get("subscriber_cost"):
        lines += _subscriber_cost_lines(results["subscriber_cost"])
    if results.get("throughput"):
        lines += _throughput_lines(results["throughput"])
    if results.get("event_log"):
        lines += _event_log_lines(results["event_log"])
    if results.get("memory"):
        lines += _memory_lines(results["memory"])
    if results.get("scaling"):
        lines += _scaling_lines(results["scaling"], results.get("plots", {}).get("scaling"))
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.json`` (each replaced whole, never torn)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "results.md", out_dir / "results.json"
    for path, text in ((md, render(results)), (js, json.dumps(results, indent=2, default=str) + "\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return md, js
