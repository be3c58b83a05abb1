"""``GET /metrics``: the campaign in Prometheus text format (``prometheus-client``).

- ``breach_deliveries_total{notifier, state}``: deliveries settled by this process's engine
  (``sent``, ``failed``, ``retried``, ``dead``, ``blocked``), a counter;
- ``breach_provider_latency_seconds{notifier}``: how long each batch took its notifier, a
  histogram;
- ``breach_queue_depth{notifier}``: deliveries pending or sending in the ledger (all workers);
- ``breach_circuit_state{notifier}``: 0 closed, 1 half-open, 2 open, with
  ``breach_circuit_trips_total``;
- ``breach_deadline_seconds_left{incident, regulator}``: for each open incident's regulator
  report not filed yet (negative once overdue).

The counters and the histogram are fed by the engine's dispatcher as it settles batches; the
gauges are read from the ledger and the breakers when scraped. Each server has its own registry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import BreachError
from ..ledger import now

if TYPE_CHECKING:
    from ..dispatch import Dispatcher
    from ..session import Breach

__all__ = ["CIRCUIT_VALUES", "Metrics"]

log = logging.getLogger(__name__)

#: breaker state -> the gauge's value (alert on ``breach_circuit_state == 2``)
CIRCUIT_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
#: provider calls take milliseconds to tens of seconds (a slow API, a timeout)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: open incidents whose deadlines are exported (the most recent ones)
DEADLINE_INCIDENTS = 50


class Metrics:
    """The server's registry; the dispatcher reports into it (it is a ``DispatchObserver``)."""

    def __init__(self, breach: Breach) -> None:
        self.breach = breach
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter("breach_deliveries", "Deliveries settled by this engine",
                                  ["notifier", "state"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("breach_provider_latency_seconds",
                                 "Time a notifier took to answer one batch", ["notifier"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.dispatcher: Dispatcher | None = None
        self.registry.register(_LedgerCollector(self))

    def watch(self, dispatcher: Dispatcher) -> None:
        """Report this dispatcher's settlements and latencies, and read its breakers."""
        self.dispatcher = dispatcher
        dispatcher.observer = self

    # -- DispatchObserver ---------------------------------------------------------------------

    def settled(self, notifier: str, state: str, count: int) -> None:
        """``count`` deliveries of ``notifier`` settled as ``state``."""
        self.deliveries.labels(notifier, state).inc(count)

    def answered(self, notifier: str, seconds: float) -> None:
        """One batch of ``notifier`` took ``seconds`` to answer."""
        self.latency.labels(notifier).observe(seconds)


class _LedgerCollector(Collector):
    """Gauges read when scraped: queue depth, breakers, deadlines."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families vary with the ledger: described by collecting

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("breach_queue_depth", "Deliveries pending or sending",
                                  labels=["notifier"])  # fmt: skip
        circuit = GaugeMetricFamily("breach_circuit_state",
                                    "Circuit breaker: 0 closed, 1 half-open, 2 open",
                                    labels=["notifier"])  # fmt: skip
        trips = CounterMetricFamily("breach_circuit_trips", "Times a breaker opened",
                                    labels=["notifier"])  # fmt: skip
        left = GaugeMetricFamily("breach_deadline_seconds_left",
                                 "Seconds until a regulator report is due (not filed yet)",
                                 labels=["incident", "regulator"])  # fmt: skip
        breach = self.metrics.breach
        try:
            for notifier, count in sorted(breach.ledger.pending_counts().items()):
                depth.add_metric([notifier], float(count))
            for incident, regulator, seconds in self._deadlines():
                left.add_metric([incident, regulator], seconds)
        except BreachError as exc:  # a scrape must answer even while the ledger is away
            log.warning("metrics: ledger unavailable", extra={"error": str(exc)})
        dispatcher = self.metrics.dispatcher
        if dispatcher is not None:
            for name, snap in sorted(dispatcher.circuit_states().items()):
                circuit.add_metric([name], CIRCUIT_VALUES.get(str(snap["state"]), 0.0))
                trips.add_metric([name], float(snap["trips"]))
        yield from (depth, circuit, trips, left)

    def _deadlines(self) -> Iterator[tuple[str, str, float]]:
        breach = self.metrics.breach
        for row in breach.incidents(DEADLINE_INCIDENTS):
            if row["state"] not in ("open", "running"):
                continue
            status: dict[str, Any] = breach.status(row["id"])
            for deadline in status["deadlines"]:
                if deadline.get("filed_at") or not deadline.get("due_at"):
                    continue
                due = datetime.fromisoformat(deadline["due_at"])
                yield row["id"], deadline["regulator"], (due - now()).total_seconds()
