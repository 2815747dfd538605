"""The node's Prometheus metrics: what it received, analysed, sent and failed, its queue, and seconds per stage.

A registry of its own (not prometheus_client's global one), so that two nodes in one process, or a test, do not
share counters. Queue depths are read from the work folder when scraped, so they are right after a restart.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..node import NodeObserver

STAGE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)


class PrometheusObserver(NodeObserver):
    def __init__(self, queue_depths: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.instances = Counter("collat_node_instances_received", "DICOM instances received (C-STORE)",
                                 registry=self.registry)
        self.studies = Counter("collat_node_studies_received", "studies complete after the quiet period, queued",
                               registry=self.registry)
        self.analysed_studies = Counter("collat_node_studies_analysed", "analyses that returned a result",
                                        ["analysis"], registry=self.registry)
        self.sent_studies = Counter("collat_node_studies_sent", "sends of a study's results to the destination",
                                    registry=self.registry)
        self.sent_objects = Counter("collat_node_objects_sent", "DICOM result objects the destination stored",
                                    registry=self.registry)
        self.failed_studies = Counter("collat_node_studies_failed", "studies moved to failed/ with their reason",
                                      registry=self.registry)
        self.stage = Histogram("collat_node_stage_seconds", "seconds a study spent in each stage", ["stage"],
                               buckets=STAGE_BUCKETS, registry=self.registry)
        depth = Gauge("collat_node_queue_depth", "studies in each state now", ["state"], registry=self.registry)
        for state in ("receiving", "queued", "waiting_for_clinical"):
            depth.labels(state).set_function(lambda s=state: queue_depths().get(s, 0))

    def instance_received(self) -> None:
        self.instances.inc()

    def study_queued(self, seconds_receiving: float) -> None:
        self.studies.inc()
        self.stage.labels("receiving").observe(max(seconds_receiving, 0.0))

    def analysed(self, part: str, seconds: float) -> None:
        self.analysed_studies.labels(part).inc()
        self.stage.labels("analysing").observe(seconds)

    def sent(self, objects: int, seconds: float) -> None:
        self.sent_studies.inc()
        self.sent_objects.inc(objects)
        self.stage.labels("sending").observe(seconds)

    def failed(self) -> None:
        self.failed_studies.inc()

    def clinical_entered(self, seconds_waiting: float) -> None:
        self.stage.labels("waiting_for_clinical").observe(max(seconds_waiting, 0.0))
