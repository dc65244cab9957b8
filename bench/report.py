"""The results as a Markdown table and raw JSON, with the machine they came from.

Figures from a shared 2-core machine mean little without the machine and the
command beside them, so both head every report.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


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
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "tensorflow": version("tensorflow") or version("tensorflow-cpu"),
        "keras": version("keras"),
        "msgspec": version("msgspec"),
        "anyio": version("anyio"),
        "platform": platform.platform(),
    }


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("within" if ok else "**over**")


def _bus(counts: dict[str, int] | None, keys: tuple[str, ...]) -> str:
    return "-" if not counts else " / ".join(str(counts.get(k, 0)) for k in keys)


def _step_ms(fit: dict[str, Any]) -> float:
    """Baseline seconds per step, from the variant with the most epochs per fit."""
    c = fit["config"]
    v = max(fit["variants"].values(), key=lambda v: v["epochs"])
    return 1000 * v["baseline_fit_s_median"] / (v["epochs"] * c["steps_per_epoch"])


def render(results: dict[str, Any]) -> str:
    """The Markdown report."""
    m = results["machine"]
    lines = [
        "# keras-eventbus benchmark results",
        "",
        "| | |",
        "| --- | --- |",
        f"| command | `{results['command']}` |",
        f"| mode | {results['mode']} |",
        f"| date (UTC) | {results['date']} |",
        f"| CPU | {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable) |",
        f"| python | {m['python']} |",
        f"| tensorflow | {m['tensorflow']} |",
        f"| keras | {m['keras']} |",
        f"| msgspec, anyio | {m['msgspec']}, {m['anyio']} |",
        f"| wall time | {results['wall_s']:.0f} s |",
    ]
    hook = results.get("hook_cost")
    if hook:
        c = hook["config"]
        lines += [
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
    fit = results.get("fit_overhead")
    if fit:
        c = fit["config"]
        lines += [
            "",
            f"## `fit` wall time vs `fit` with no callbacks (budget: async 10 ms subscriber <= {c['budget_ratio']:g}x)",
            "",
            f"MLP on {c['data']} ({c['rows']} rows, batch {c['batch_size']}, {c['steps_per_epoch']} steps/epoch), "
            "`verbose=0`; ratios per pair (variant fit / baseline fit, order alternating), "
            f"median and min-max over pairs. Bus closing (timeout {c['close_timeout_s']:g} s) is not timed. "
            f"A baseline step took {_step_ms(fit):.2f} ms here (fit overhead included); "
            "the cost of a synchronous 10 ms callback scales with 10 ms / step time. "
            "CPU ratio: process CPU time (all threads) of the pair, less sensitive to a shared machine's load; "
            "bus loop CPU: what the bus's own thread used per training step.",
            "",
            "| variant | epochs | pairs | ratio median | ratio min-max | fit s / baseline s | CPU ratio median "
            "| bus loop CPU us/step | bus: published / delivered / dropped / failed / undelivered "
            "| bus log records | close s | budget |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        keys = ("published", "delivered", "dropped", "failed", "undelivered")
        for v in fit["variants"].values():
            lines.append(
                f"| {v['label']} | {v['epochs']} | {v['pairs']} | {_f(v['ratio_median'], 3)}x "
                f"| {_f(v['ratio_min'], 3)}-{_f(v['ratio_max'], 3)} "
                f"| {_f(v['fit_s_median'])} / {_f(v['baseline_fit_s_median'])} | {_f(v['cpu_ratio_median'], 3)}x "
                f"| {_f(v['loop_cpu_us_per_step'], 0)} | {_bus(v['bus'], keys)} "
                f"| {'-' if v['log_records'] is None else v['log_records']} "
                f"| {_f(v['close_s_median'])} | {_verdict(v['within_budget'])} |"
            )
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
