"""The timeline chart: matched statements per week as stacked bars, laid out here, drawn by a template.

Pure geometry from counts to rectangles; no SVG text is built in Python, so the template's
autoescape covers every label. Renders without internet: no script, no font, no library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.store.queries import WeekCount

# Okabe-Ito and Tableau tones: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#7f7f7f", "#8c564b")
OTHER = "other"
WIDTH, HEIGHT = 900, 320
LEFT, RIGHT, TOP, BOTTOM = 48, 40, 12, 36  # room for the axis labels


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    total: int


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    week: str
    week_end: str  # the next Monday, for links to the week's statements
    series: str
    colour: str
    count: int


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    series: tuple[Series, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    weeks: tuple[str, ...]
    table: tuple[tuple[str, tuple[int, ...]], ...]  # week -> counts in series order, for the data table
    plot: tuple[float, float, float, float]  # left, top, right, bottom

    @property
    def empty(self) -> bool:
        return not self.bars


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_range(last: date, weeks: int) -> list[str]:
    """The Mondays of the `weeks` weeks ending with the week of `last`, oldest first."""
    end = monday(last)
    return [(end - timedelta(weeks=n)).isoformat() for n in range(weeks - 1, -1, -1)]


def weekly_chart(counts: Sequence[WeekCount], weeks: Sequence[str], top: int = 8) -> Chart:
    """Stacked bars: the `top` busiest keys each in a colour, the rest together as "other"."""
    names = _series_names(counts, top)
    grid = {(w, n): 0 for w in weeks for n in names}
    for c in counts:
        key = (c.week, c.key if c.key in names else OTHER)
        if key in grid:
            grid[key] += c.items
    series = tuple(
        Series(n, PALETTE[i % len(PALETTE)], sum(grid[w, n] for w in weeks)) for i, n in enumerate(names)
    )
    table = tuple((w, tuple(grid[w, n] for n in names)) for w in weeks)
    peak = max((sum(row) for _, row in table), default=0)
    return _layout(series, table, nice_ceiling(peak))


def _series_names(counts: Sequence[WeekCount], top: int) -> list[str]:
    totals: dict[str, int] = {}
    for c in counts:
        totals[c.key] = totals.get(c.key, 0) + c.items
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    return ranked[:top] + ([OTHER] if len(ranked) > top else [])


Table = tuple[tuple[str, tuple[int, ...]], ...]


def _layout(series: tuple[Series, ...], table: Table, ceiling: int) -> Chart:
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    slot = (right - left) / max(len(table), 1)
    scale = (bottom - top) / ceiling
    bars: list[Bar] = []
    for index, (week, row) in enumerate(table):
        y = float(bottom)
        for s, count in zip(series, row, strict=True):
            if count:
                height = count * scale
                y -= height
                bars.append(Bar(round(left + index * slot + slot * 0.1, 1), round(y, 1), round(slot * 0.8, 1),
                                round(height, 1), week, _next_week(week), s.name, s.colour, count))
    step = max(1, -(-len(table) // 6))
    last = len(table) - 1  # label the current week, then every `step` weeks back
    x_ticks = tuple(Tick(round(left + (i + 0.5) * slot, 1), w) for i, (w, _) in enumerate(table)
                    if not (last - i) % step)
    y_ticks = tuple(Tick(round(bottom - v * scale, 1), str(v)) for v in _tick_values(ceiling))
    return Chart(WIDTH, HEIGHT, tuple(bars), series, x_ticks, y_ticks, tuple(w for w, _ in table), table,
                 (left, top, right, bottom))


def _next_week(week: str) -> str:
    return (date.fromisoformat(week) + timedelta(days=7)).isoformat()


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above `value` (at least 1)."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10


def _tick_values(ceiling: int) -> list[int]:
    step = ceiling // 5 if ceiling >= 5 else 1  # ceilings are 1, 2 or 5 times a power of ten
    return list(range(0, ceiling + 1, step))
