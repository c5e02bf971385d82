"""Put a controller together from its settings, for any source, and run it.

``mlopsctl controller run`` is the one caller: it reads the settings once and hands them
here. A folder or S3 source runs the runtime in this thread; ``kube`` runs kopf, which
starts the same runtime (its loop and workers in threads) once it is up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from controller.metrics import ControllerMetrics, serve
from controller.runtime import Controller
from controller.settings import ControllerSettings
from mlops_core import aws
from mlops_core.cost.prices import PriceResolver
from mlops_core.errors import InvalidInput
from mlops_core.logs import get_logger

log = get_logger("controller")


def make_controller(
    settings: ControllerSettings,
    source,
    *,
    reconciler=None,
    metrics: ControllerMetrics | None = None,
) -> Controller:
    if reconciler is None:
        # Imported here so that sources and the queue load without the AWS planner.
        from controller.reconcile import Reconciler

        reconciler = Reconciler(
            settings.names(),
            network=settings.network(),
            polling=settings.polling(),
            prices=PriceResolver.from_settings(settings),
            source=source.uri,
        )
    return Controller(
        source,
        reconciler,
        workers=settings.workers,
        batch=settings.batch,
        resync=settings.resync,
        poll=settings.poll_for(source.uri),
        once_attempts=settings.once_attempts,
        busy_wait=settings.lease_ttl,
        delete_policy=settings.delete_policy,
        metrics=metrics,
    )


def serve_metrics(settings: ControllerSettings, metrics: ControllerMetrics, poll: float) -> None:
    if not settings.metrics:
        return
    metrics.count_aws_calls()
    _, port = serve(
        metrics, settings.metrics_host, settings.metrics_port, ready_within=max(30.0, 10 * poll)
    )
    log.info("metrics served", port=port, paths=["/metrics", "/readyz", "/healthz"])


def open_any_source(uri: str, settings: ControllerSettings):
    """A folder, S3 or (``kube``) Kubernetes source, with the lease the settings give."""
    from controller.leases import Lease
    from controller.sources import open_source

    if uri != "kube":
        return open_source(
            uri, platform=settings.names(), lease_ttl=settings.lease_ttl, holder=settings.identity
        )
    from controller.kubeapi import KubeClient, login
    from controller.sources.kube import KubeLeaseStore, KubeSource

    client = KubeClient(login())
    lease_ns = settings.kube_lease_namespace or settings.kube_namespace or client.default_namespace
    lease = Lease(
        KubeLeaseStore(client, lease_ns),
        holder=settings.identity,
        ttl=settings.lease_ttl,
        write_budget=min(aws.limits().worst_case(), settings.lease_ttl / 2),
    )
    return KubeSource(
        client, lease, namespace=settings.kube_namespace, delete_policy=settings.delete_policy
    )


def run_kube(
    settings: ControllerSettings,
    *,
    reconciler=None,
    stop_flag: threading.Event | None = None,
    on_started: Callable[[Controller], None] | None = None,
) -> None:
    """The Kubernetes operator until SIGTERM/SIGINT: kopf watches, the runtime acts."""
    from controller.kube import run_kopf

    liveness = None if settings.kube_liveness in ("", "off") else settings.kube_liveness
    source = open_any_source("kube", settings)
    metrics = ControllerMetrics()
    controller = make_controller(settings, source, reconciler=reconciler, metrics=metrics)
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), name="runtime", daemon=True)

    def start() -> None:
        serve_metrics(settings, metrics, controller.poll)
        thread.start()
        if on_started is not None:
            on_started(controller)

    def finish() -> None:
        stop.set()
        thread.join(timeout=60)

    log.info(
        "starting the Kubernetes operator",
        namespace=settings.kube_namespace or "(all)",
        lease=source.lease.uri,
        identity=source.lease.holder,
        delete_policy=settings.delete_policy,
        liveness=liveness,
    )
    run_kopf(
        source,
        start,
        finish,
        namespace=settings.kube_namespace,
        liveness=liveness,
        stop_flag=stop_flag,
    )


def check_once_source(uri: str) -> None:
    if uri == "kube":
        raise InvalidInput(
            "--once is not available with --source kube: the operator runs until stopped",
            hint="use 'kubectl get mdep' for status, or --once with a folder or s3:// source",
        )
