#!/usr/bin/env python3
"""Draw the dashboard's main panels with matplotlib from a Prometheus' answers, into a PNG.

    python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 --minutes 60

The queries are the dashboard's own (metrics/dashboards.py), sent as ``query_range`` (the funnel as an
instant query over the same range), so the picture shows what Grafana would. ``--window 30s`` replaces
the dashboards' rate windows, for a picture of a few minutes of traffic.
``python tests/metrics/promharness.py`` runs a real Prometheus on simulated traffic and calls this.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from metrics import dashboards as d

PANELS = (  # (title, y-axis unit)
    (d.FILLBACK_BY_COUNTRY, "ratio"),
    (d.FILLBACK_BY_ROUTE, "ratio"),
    (d.OTP_VOLUME, "OTPs/s"),
    (d.FUNNEL, "events"),
    (d.FRAUD_BY_REASON, "decisions/s"),
    (d.LATENCY, "ms"),
)


def with_window(expr: str, window: str | None) -> str:
    return re.sub(r"\[(\d+[smhd])\]", f"[{window}]", expr) if window else expr


async def fetch(session: aiohttp.ClientSession, url: str, path: str, **params: str) -> list[dict[str, Any]]:
    async with session.get(url + path, params=params) as resp:
        body = await resp.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{params.get('query')}: {body.get('error')}")
    return list(body["data"]["result"])


def draw_series(ax: Axes, series: list[tuple[str, list[tuple[float, float]]]], unit: str) -> None:
    scale = 1000.0 if unit == "ms" else 1.0
    for label, points in sorted(series):
        xs = [datetime.fromtimestamp(t) for t, _ in points]
        ax.plot(xs, [v * scale for _, v in points], label=label, linewidth=1.6)
    if unit == "ratio":
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_ylabel(unit)
    locator = mdates.AutoDateLocator(maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.legend(fontsize=7, loc="best", ncol=2)


def draw_funnel(ax: Axes, stages: list[tuple[str, float]]) -> None:
    names = [n for n, _ in stages][::-1]
    counts = [v for _, v in stages][::-1]
    bars = ax.barh(names, counts, color=["#8e44ad", "#2980b9", "#27ae60", "#f39c12"][: len(counts)][::-1])
    top = max(counts) if counts and max(counts) > 0 else 1.0
    for bar, value in zip(bars, counts, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {value:.0f} ({value / top:.0%})",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, top * 1.3)


async def render(
    prometheus: str, out: Path, start: float, end: float, window: str | None = None, step: float | None = None
) -> None:
    dashboard = d.build_dashboard()
    step = step or max(1.0, (end - start) / 200)
    fig, axes = plt.subplots(3, 2, figsize=(13, 11), constrained_layout=True)
    fig.suptitle(
        f"{d.TITLE}\n{datetime.fromtimestamp(start):%Y-%m-%d %H:%M} to {datetime.fromtimestamp(end):%H:%M}",
        fontsize=12,
    )
    async with aiohttp.ClientSession() as session:
        for ax, (title, unit) in zip(axes.flat, PANELS, strict=True):
            ax.set_title(title, fontsize=10)
            queries = d.panel_queries(dashboard, title)
            if title == d.FUNNEL:
                stages = []
                for q in queries:
                    expr = d.expand_macros(q.expr, int(end - start))
                    result = await fetch(session, prometheus, "/api/v1/query", query=expr, time=str(end))
                    stages.append((q.legend, float(result[0]["value"][1]) if result else 0.0))
                draw_funnel(ax, stages)
                continue
            series = []
            for q in queries:
                result = await fetch(
                    session,
                    prometheus,
                    "/api/v1/query_range",
                    query=with_window(q.expr, window),
                    start=str(start),
                    end=str(end),
                    step=str(step),
                )
                for r in result:
                    points = [
                        (float(t), float(v)) for t, v in r["values"] if v not in ("NaN", "+Inf", "-Inf")
                    ]
                    series.append((d.legend_text(q.legend, r["metric"]), points))
            draw_series(ax, series, unit)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=60.0, help="time range ending now")
    parser.add_argument("--window", help="replace the queries' rate windows, e.g. 30s")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    args = parser.parse_args()
    end = time.time()
    asyncio.run(render(args.prometheus, args.out, end - args.minutes * 60, end, args.window))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
