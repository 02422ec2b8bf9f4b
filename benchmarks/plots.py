"""The bench's pictures: completions over time, and the latency CDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen

import matplotlib.pyplot as plt


def plot_throughput(series: dict[str, list[tuple[float, int]]], path: Path) -> None:
    """Commands done (succeeded and visible) over time since the load started."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, samples in series.items():
        if samples:
            axes.plot([t for t, _ in samples], [n for _, n in samples], label=name)
    axes.set_xlabel("seconds since the load started")
    axes.set_ylabel("commands done")
    axes.set_title("End to end: commands succeeded and visible")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_latency(series: dict[str, list[float]], path: Path) -> None:
    """The distribution of accept → visible in the registry, one curve per load."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, samples in series.items():
        if samples:
            ordered = sorted(samples)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axes.plot(ordered, fractions, label=f"{name} of the end-to-end maximum")
    axes.set_xscale("log")
    axes.set_xlabel("ms from the request until the registry shows the outcome")
    axes.set_ylabel("fraction of commands")
    axes.set_title("Registry visibility, latency CDF")
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
