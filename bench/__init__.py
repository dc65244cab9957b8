"""Benchmarks: what the event bus costs the training step.

The budgets live in the design notes; timed tests would be flaky on shared
machines, so the figures are measured here and written down instead:

- :mod:`bench.hook_cost`: the bridge's cost per hook on the training thread;
- :mod:`bench.fit_overhead`: ``fit`` wall time with the bus, as ratios to a
  ``fit`` with no callbacks at all.

``python -m bench`` runs both and writes ``bench/results/results.md`` and
``bench/results/results.json``; ``python -m bench --quick`` is a short run.
"""

from __future__ import annotations

import os

# TensorFlow reads this once, at import: keep its C++ logging quiet for the benchmarks.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
