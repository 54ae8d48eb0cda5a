"""Terminal pictures: a small dead-rate bar for table cells and a per-site bar chart."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deadrelu.report.model import ScanResult

_EIGHTHS = " ▏▎▍▌▋▊▉"
_BLOCKS = "▁▂▃▄▅▆▇█"

# Rich colours per activation kind; the HTML report uses the same hues.
KIND_STYLES = {
    "relu": "#1f77b4", "relu6": "#17becf", "hardtanh": "#0f8a8a", "thresholded_relu": "#393b79",
    "leaky_relu": "#9467bd", "prelu": "#7b4ea3", "rrelu": "#a98bd0", "elu": "#ff7f0e",
    "selu": "#e6550d", "celu": "#fdae6b", "gelu": "#2ca02c", "silu": "#74c476",
    "mish": "#31a354", "softplus": "#8c6d31", "hardswish": "#bcbd22", "hardsigmoid": "#e377c2",
    "sigmoid": "#d6616b", "tanh": "#843c39",
}


def spark(rate: float) -> str:
    """``rate`` in [0, 1] as one block character of eight heights; blank only for 0, so a
    single dead neuron still shows."""
    if rate <= 0:
        return " "
    return _BLOCKS[min(7, max(0, math.ceil(min(rate, 1.0) * 8) - 1))]


def bar(rate: float, width: int) -> tuple[str, str]:
    """``rate`` in [0, 1] as a bar ``width`` characters wide, in eighths of a character:
    (filled part, empty remainder)."""
    rate = min(max(rate, 0.0), 1.0)
    eighths = round(rate * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (_EIGHTHS[part] if part else "")
    return filled, "░" * (width - len(filled))


def bar_text(rate: float, width: int, style: str = "red") -> Text:
    filled, empty = bar(rate, width)
    text = Text(filled, style=style)
    text.append(empty, style="dim")
    return text


def render_plot(result: ScanResult, console: Console, width: int = 40) -> None:
    """One line per site in execution order: a bar of its dead rate, coloured by kind."""
    table = Table(title="dead rate per site (execution order; █ dead, ░ alive)",
                  title_justify="left", box=box.SIMPLE, show_header=False, pad_edge=False,
                  padding=(0, 1, 0, 0))
    table.add_column("site", overflow="fold", max_width=48)
    table.add_column("kind")
    table.add_column("bar", no_wrap=True)
    table.add_column("dead%", justify="right")
    table.add_column("dead", justify="right")
    for site in result.sites:
        style = KIND_STYLES.get(site.info.kind, "white")
        table.add_row(Text(site.name), Text(site.info.kind, style=style),
                      bar_text(site.dead_rate, width, style),
                      f"{100 * site.dead_rate:.1f}%", f"{site.dead_count}/{site.info.neurons}")
    console.print(table)
