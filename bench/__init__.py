"""Benchmarks: what the event bus costs the training step, and how far it carries.

The budgets live in the design notes; timed tests would be flaky on shared
machines, so the figures are measured here and written down instead:

- :mod:`bench.memory`: resident memory while one subscriber is stalled;
- :mod:`bench.hook_cost`: the bridge's cost per hook on the training thread;
- :mod:`bench.fit_overhead`: ``fit`` wall time with the bus, and with Keras's
  own callbacks and Weights & Biases' as peers, as ratios to a ``fit`` with
  no callbacks at all;
- :mod:`bench.throughput`: events/s from one producer thread to 1, 8 and 64
  subscribers, on asyncio and trio;
- :mod:`bench.event_log`: the event log's append rate;
- :mod:`bench.scaling`: per-event cost as subscribers and the event rate
  double (plotted by :mod:`bench.plots`).

``python -m bench`` runs them all and writes ``bench/results/results.md`` (the
budgets table first), ``bench/results/results.json`` and
``bench/results/scaling.png``; ``python -m bench --quick`` is a short run.
"""

from __future__ import annotations

import os

# TensorFlow reads this once, at import: keep its C++ logging quiet for the benchmarks.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
