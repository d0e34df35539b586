"""The web admin's metrics page: the figures `/metrics` exports, sampled in
memory over the last hour and drawn as inline SVG sparklines. Pure: the
sampler takes the clock's `now` and the samples; nothing touches a socket or
a database."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup, escape

#: How far back the page looks.
SPAN = 3600.0
#: Series kept at most (a registry with many label sets stays bounded).
MAX_SERIES = 200
WIDTH, HEIGHT = 200, 40


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]

    @property
    def last(self) -> float:
        return self.points[-1][1] if self.points else 0.0


def totals(registry) -> dict[str, float]:
    """Each sample name of a prometheus_client registry, summed over its labels
    (`_created` timestamps left out: they are no figures)."""
    found: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    return found


class MetricHistory:
    """The last `span` seconds of samples, per series."""

    def __init__(self, span: float = SPAN) -> None:
        self.span = span
        self._series: dict[str, deque[tuple[float, float]]] = {}

    def record(self, now: float, values: dict[str, float]) -> None:
        for name, value in values.items():
            points = self._series.get(name)
            if points is None:
                if len(self._series) >= MAX_SERIES:
                    continue
                points = self._series[name] = deque()
            points.append((now, value))
        for points in self._series.values():
            while points and points[0][0] < now - self.span:
                points.popleft()

    def series(self) -> list[Series]:
        return [Series(name, tuple(points)) for name, points in sorted(self._series.items())]


def sparkline(points: Iterable[tuple[float, float]], label: str) -> Markup:
    """An inline <svg> polyline of the points, scaled to fit, with a text label."""
    points = list(points)
    title = escape(label)
    if not points:
        return Markup(f'<svg class="spark" role="img" aria-label="{title}: no data" '
                      f'viewBox="0 0 {WIDTH} {HEIGHT}"></svg>')
    t0, t1 = points[0][0], points[-1][0]
    low = min(v for _, v in points)
    high = max(v for _, v in points)
    span_t = (t1 - t0) or 1.0
    span_v = (high - low) or 1.0
    coords = " ".join(
        f"{(t - t0) / span_t * WIDTH:.1f},{HEIGHT - 2 - (v - low) / span_v * (HEIGHT - 4):.1f}"
        for t, v in points)
    if len(points) == 1:
        coords += f" {WIDTH},{coords.split(',')[1]}"
    return Markup(
        f'<svg class="spark" role="img" aria-label="{title}: from {low:g} to {high:g}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none">'
        f'<polyline fill="none" stroke="#0b4f8a" stroke-width="2" points="{coords}"/></svg>')
