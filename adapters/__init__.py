"""The bus's edges to the outside world: the Keras bridge, files, sockets.

Installed as ``eventbus.adapters``. Importing this package imports nothing
heavy; ``eventbus.adapters.keras`` is the one module that imports Keras.
"""

from __future__ import annotations

__all__: list[str] = []
