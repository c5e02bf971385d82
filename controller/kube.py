"""The Kubernetes operator: kopf for what only kopf does, the runtime for the rest.

kopf here does three things, and nothing of the reconcile:

- **watching**: one ``on.event`` handler feeds every ModelDeployment event into the
  :class:`~controller.sources.kube.KubeSource`, which the runtime
  (:mod:`controller.runtime`, the same loop, queue and reconcile path as the folder and
  S3 sources) polls like any other source;
- **the finalizer**: an ``on.delete`` handler waits until the runtime has applied the
  delete policy (``Retain`` / ``ScaleToZero``, the same for every source), then kopf
  removes the finalizer. With no controller running, a deletion waits on the finalizer;
  ``kubectl patch mdep NAME --type=merge -p '{"metadata":{"finalizers":[]}}'`` releases
  it without touching AWS;
- **the liveness endpoint** (``/healthz``), answering while kopf's tasks live.

Status writes, Events and leader election are the runtime's (:mod:`controller.kubeapi`):
a status is written whenever a worker finishes, not only inside a kopf handler, and one
``coordination.k8s.io`` Lease makes replicas exclusive, with the same renew/fence rules
as the S3 source's lease (kopf's own peering would pause kopf but not the runtime's
queue, and could not fence a write). kopf runs ``standalone``: every replica watches,
only the lease holder acts, and a replica restarted after a crash with the same identity
(the chart passes the pod's name) takes its lease back at once.

kopf's bookkeeping lives in annotations under ``kopf.mlops.platform.io/`` and never
copies the user's annotations or labels (the diff-base is the spec alone), so an object
with large annotations cannot make kopf's own patch too large.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf

from controller.api import GROUP, PLURAL, VERSION
from controller.sources.kube import KubeSource, body_key
from mlops_core.logs import get_logger

log = get_logger("controller.kube")

FINALIZER = f"{GROUP}/finalizer"
KOPF_PREFIX = f"kopf.{GROUP}"
DIFFBASE_ANNOTATION = f"{KOPF_PREFIX}/last-handled-configuration"
RESOURCE = (GROUP, VERSION, PLURAL)
#: How long kopf's finalizer handler waits for the runtime before kopf retries it.
FINALIZE_WAIT = 20.0


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def build_registry(
    source: KubeSource, start: Any, stop: Any, *, finalize_wait: float = FINALIZE_WAIT
) -> kopf.OperatorRegistry:
    """kopf's handlers, bound to ``source``; ``start``/``stop`` run the runtime."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, id="login")(_login)

    @kopf.on.startup(registry=registry, id="runtime")
    async def _start(**_: Any) -> None:
        start()

    @kopf.on.cleanup(registry=registry, id="runtime")
    async def _stop(**_: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, stop)

    @kopf.on.event(*RESOURCE, registry=registry, id="watch")
    def _event(event: kopf.RawEvent, **_: Any) -> None:
        source.observe(event.get("type"), event["object"])

    @kopf.on.delete(*RESOURCE, registry=registry, id="finalize")
    async def _delete(body: kopf.Body, **_: Any) -> None:
        if not await source.finalize(body, timeout=finalize_wait):
            raise kopf.TemporaryError(
                f"waiting for the controller holding the lease to apply the delete policy "
                f"of {body_key(body)}",
                delay=2,
            )

    return registry


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    # The diff-base is the spec only: kopf would otherwise copy every user annotation and
    # label into its own annotation, and a legal object with ~100 KB of annotations would
    # make kopf's patch exceed the API server's 256 KiB limit (and retry forever).
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX,
        key=DIFFBASE_ANNOTATION.split("/", 1)[1],
        ignored_fields=["metadata.annotations", "metadata.labels"],
    )
    settings.posting.enabled = False  # Events are the runtime's (one per action/transition)
    settings.posting.level = logging.INFO
    return settings


def run_kopf(
    source: KubeSource,
    start: Any,
    stop: Any,
    *,
    namespace: str | None,
    liveness: str | None,
    stop_flag: threading.Event | None = None,
) -> None:
    """Run kopf until SIGINT/SIGTERM (or ``stop_flag``), cluster-wide or in ``namespace``."""
    kopf.run(
        registry=build_registry(source, start, stop),
        settings=operator_settings(),
        standalone=True,
        liveness_endpoint=liveness,
        clusterwide=namespace is None,
        namespaces=[namespace] if namespace else (),
        stop_flag=stop_flag,
    )
