"""One matplotlib setup for every PNG ai_jax writes (report, ablation, loss curve, sweep).

A Figure with an Agg canvas, no pyplot: no global backend switch and no state shared with
whatever else the process plots (a notebook's inline figures included).
"""

from __future__ import annotations

import io


def new_figure(width: float, height: float, dpi: int = 100):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width, height), dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def png_bytes(fig, tight: bool = True) -> bytes:
  """The figure as PNG bytes (write them with store.atomic.write_bytes_atomic)."""
  if tight:
    fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  return buf.getvalue()
