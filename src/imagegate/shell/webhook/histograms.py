"""A Prometheus histogram that takes observations in batches, exported by a custom collector.

prometheus_client's ``Histogram`` takes one observation per call, and with several worker
processes every call is a locked write to a shared memory-mapped file: per request, that
costs a visible part of a decision. The server counts latencies per bucket in plain
numbers instead (``Metrics.record``) and hands them here about once a second. This
collector keeps the running totals and exports them through prometheus_client's public
custom-collector interface (``collect`` yielding a ``HistogramMetricFamily``).

With several workers (``directory`` set: the multiprocess directory), each worker also
writes its totals to a file of its own there, and whichever worker answers a scrape sums
all the files, as prometheus_client's ``MultiProcessCollector`` does with its ``*.db``
files: a worker that has exited still counts, like its counters do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import msgspec
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from imagegate.shell.logs import get_logger

__all__ = ["BatchedHistogram", "Counts"]

log = get_logger("imagegate.metrics")

# label value -> (sum of the observations, count per bucket, not cumulative, +Inf last)
Counts = dict[str, tuple[float, list[int]]]
_COUNTS = msgspec.json.Decoder(Counts)
_FILE_PREFIX = "batched-histogram-"  # not *.db: MultiProcessCollector reads those


class BatchedHistogram:
    """One histogram with one label, fed per bucket; a prometheus_client collector."""

    def __init__(
        self, name: str, documentation: str, label: str, buckets: Sequence[float], directory: Path | None = None
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.buckets = tuple(float(b) for b in buckets)
        self.directory = directory
        self._totals: Counts = {}

    def new_counts(self) -> list[int]:
        return [0] * (len(self.buckets) + 1)

    def add(self, batch: Mapping[str, tuple[float, list[int]]]) -> None:
        """Add a batch of observations counted with :meth:`new_counts`.

        A value counts in the first bucket whose upper bound (``le``) is >= it: ``bisect_left``.
        """
        if not batch:
            return
        self._merge(self._totals, batch)
        if self.directory is not None:
            path = self.directory / f"{_FILE_PREFIX}{self.name}-{os.getpid()}.json"
            scratch = path.with_suffix(".tmp")
            scratch.write_bytes(msgspec.json.encode(self._totals))
            os.replace(scratch, path)  # a scrape never reads half a file

    def _all_totals(self) -> Counts:
        if self.directory is None:
            return self._totals
        combined: Counts = {}
        for path in sorted(self.directory.glob(f"{_FILE_PREFIX}{self.name}-*.json")):
            try:
                totals = _COUNTS.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError) as exc:
                log.warning("unreadable histogram file skipped", path=str(path), error=str(exc))
                continue
            if any(len(counts) != len(self.buckets) + 1 for _total, counts in totals.values()):
                log.warning("histogram file with other buckets skipped", path=str(path))
                continue
            self._merge(combined, totals)
        return combined

    def _merge(self, into: Counts, batch: Mapping[str, tuple[float, list[int]]]) -> None:
        for value, (total, counts) in batch.items():
            old_total, old_counts = into.get(value) or (0.0, self.new_counts())
            into[value] = (old_total + total, [a + b for a, b in zip(old_counts, counts, strict=True)])

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=[self.label])

    def describe(self) -> Iterable[Metric]:
        """Names only (the registry checks them for clashes when this is registered)."""
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        # ``le`` as prometheus_client writes it; repr() is the same for bounds below 1e6
        bounds = [repr(b) for b in self.buckets] + ["+Inf"]
        for value, (total, counts) in sorted(self._all_totals().items()):
            cumulative, running = [], 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            family.add_metric([value], cumulative, total)
        yield family
