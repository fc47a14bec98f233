"""A PNG of one SLO's burn rate per window, from a Prometheus' data (what the SLO overview dashboard shows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from homelab_observability.slo import BURN_WINDOWS


def plot_burn_rate(stack: Any, slo: str, start: float, end: float, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    styles = {"5m": "-", "30m": "--", "1h": "-.", "6h": ":"}
    for window, style in styles.items():
        expr = f'slo:sli_error:ratio_rate{window}{{slo="{slo}"}} / on (slo, service) (1 - slo:objective:ratio)'
        for series in stack.query_range(expr, start, end):
            xs = [float(t) - start for t, _ in series["values"]]
            ys = [float(v) for _, v in series["values"]]
            ax.plot(xs, ys, style, linewidth=2, label=f"burn rate over {window}")
    for pair in BURN_WINDOWS:
        color = "red" if pair.severity == "critical" else "orange"
        meaning = "page" if pair.severity == "critical" else "ticket"
        ax.axhline(pair.factor, linestyle="--", color=color, linewidth=0.8)
        ax.text(
            0.01,
            pair.factor * 1.1,
            f"{meaning} {pair.long}/{pair.short}: {pair.factor:g}x",
            color=color,
            fontsize=8,
            transform=ax.get_yaxis_transform(),
        )
    ax.set_yscale("log")
    ax.set_ylim(0.5, 5000)
    ax.set_xlabel("seconds since the test's Prometheus started")
    ax.set_ylabel("burn rate (1 = budget spent exactly over the period)")
    ax.set_title(f"SLO {slo}: burn rate from the test Prometheus")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
