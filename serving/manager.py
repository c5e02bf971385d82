"""Which model is live: the initial load, pointer following and the atomic swap.

The live model is one immutable :class:`~serving.loader.LoadedModel` behind one
attribute. A request reads that attribute once and uses the object it got to the end, so
a swap never mixes two versions inside one request, and requests in flight during a swap
finish on the old version. Loading and verifying a new version happens off the event
loop; only the final assignment is the swap.

A version that fails verification is never swapped in: the service keeps the model it
has (or stays not ready if it has none), logs why, and does not retry the same pointer
value until it changes.
"""

from __future__ import annotations

import asyncio

import structlog

from mlops_core.errors import IntegrityError, MlopsError, NotFound
from mlops_core.pointer import PointerStore
from mlops_core.publication import Pins
from serving.loader import LoadedModel, load_model
from serving.metrics import ServingMetrics
from serving.settings import ServingSettings

log = structlog.get_logger("serving.model")

# (uri, sha256) of what should be served; sha256 may be None for an unpinned MODEL_URI.
# (uri, model sha256, publication pins): what one load is pinned to.
Target = tuple[str, str | None, Pins | None]


class ModelManager:
    def __init__(
        self,
        settings: ServingSettings,
        metrics: ServingMetrics,
        store: PointerStore | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self._store = store
        self.current: LoadedModel | None = None
        #: Why the service is not ready, or why the last new version was refused.
        self.error: str | None = "the model has not been loaded yet"
        self._failed: Target | None = None

    @property
    def store(self) -> PointerStore:
        if self._store is None:
            self._store = PointerStore(self.settings.platform)
        return self._store

    # -- what to serve -----------------------------------------------------------------
    def _target(self) -> tuple[Target, str | None] | None:
        """The (uri, sha256) to serve and the version the pointer names, if any."""
        s = self.settings
        if not s.follows_pointer:
            assert s.model_uri is not None
            return (s.model_uri, s.model_sha256, s.pins), None
        assert s.project is not None and s.env is not None
        pointer = self.store.get(s.project, s.env)
        if pointer is None:
            return None
        if s.model_sha256 and s.model_sha256 != pointer.sha256:
            raise IntegrityError(
                f"the pointer names model sha256 {pointer.sha256[:12]}…, "
                f"but MODEL_SHA256 pins {s.model_sha256[:12]}…",
                where=f"pointer {s.project}/{s.env}",
                hint="unset MODEL_SHA256 to follow the pointer, or promote the pinned version",
            )
        if pointer.pins is None:
            raise IntegrityError(
                f"the pointer names version {pointer.version} without its publication pins",
                where=f"pointer {s.project}/{s.env}",
                hint="the pointer was not written by 'mlopsctl promote' or the controller; "
                "promote the version to rewrite it",
            )
        return (pointer.uri, pointer.sha256, pointer.pins), pointer.version

    def refresh(self) -> bool:
        """Load the version that should be served if it is not the live one.

        Blocking (downloads, unpickles): call it from a worker thread. Returns True when
        a new model was swapped in. Never raises for a bad model or a bad pointer.
        """
        s = self.settings
        try:
            found = self._target()
        except MlopsError as exc:
            return self._refused(None, exc)
        except Exception as exc:  # an AWS outage must not take serving down
            log.warning("pointer read failed", source=s.source, error=str(exc))
            if self.current is None:
                self.error = f"could not read the pointer: {exc}"
            return False
        if found is None:
            missing = (
                f"no model is promoted to {s.env} of {s.project} yet "
                f"(no pointer parameter); promote a version to serve it"
            )
            if self.current is None and self.error != missing:
                self.error = missing
                log.warning("no pointer", project=s.project, env=s.env)
            return False
        target, pointer_version = found
        if self.current is not None and (
            self.current.uri,
            self.current.sha256,
            self.current.pins,
        ) == (target[0], target[1] or self.current.sha256, target[2]):
            # The pointer is back on the live version: an earlier refusal no longer applies.
            self.error, self._failed = None, None
            return False
        if target == self._failed:
            return False  # already refused and logged; wait for the pointer to move
        log.info("loading model", uri=target[0], version=pointer_version)
        try:
            model = load_model(
                target[0],
                expected_sha256=target[1],
                pins=target[2],
                max_batch=s.max_batch,
                signing_key=s.platform.model_signing_key,
            )
            if s.follows_pointer and model.project != s.project:
                raise IntegrityError(
                    f"the pointer of {s.project}/{s.env} names a model of project "
                    f"{model.project!r}",
                    where=target[0],
                    hint="someone wrote another project's version into this pointer; "
                    "promote one of this project's versions",
                )
            if pointer_version is not None and model.version != pointer_version:
                raise IntegrityError(
                    f"the pointer names version {pointer_version}, "
                    f"the folder holds {model.version}",
                    where=target[0],
                    hint="re-promote the version to rewrite the pointer",
                )
        except MlopsError as exc:
            return self._refused(target, exc)
        except Exception as exc:  # e.g. the network: not remembered, retried next poll
            self.metrics.model_loads.labels(result="error").inc()
            self.error = f"loading {target[0]} failed: {exc}"
            log.exception("model load failed", uri=target[0])
            return False
        self.swap(model)
        return True

    def _refused(self, target: Target | None, exc: MlopsError) -> bool:
        # A version not (yet) found may appear; a digest or version mismatch will not.
        self._failed = None if isinstance(exc, NotFound) else target
        if exc.render() == self.error:
            return False  # the same refusal as on the last poll: said once is enough
        self.metrics.model_loads.labels(result="refused").inc()
        self.error = exc.render()
        log.error(
            "model refused",
            reason=exc.reason,
            error=exc.what,
            where=exc.where,
            hint=exc.hint,
            serving=self.current.version if self.current else None,
        )
        return False

    def swap(self, model: LoadedModel) -> None:
        previous = self.current
        self.current = model  # the swap: one reference assignment
        self.error = None
        self._failed = None
        self.metrics.set_model(model)
        self.metrics.model_loads.labels(result="loaded").inc()
        log.info(
            "model loaded",
            project=model.project,
            version=model.version,
            sha256=model.sha256,
            uri=model.uri,
            previous=previous.version if previous else None,
        )

    # -- following the pointer ---------------------------------------------------------
    async def follow(self, interval: float) -> None:
        """Poll the pointer every ``interval`` seconds until cancelled."""
        log.info("following pointer", source=self.settings.source, interval=interval)
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.refresh)

    async def retry_until_loaded(self, interval: float) -> None:
        """After a failed start-up load, try again every ``interval`` seconds until a model
        is live. Refusals are remembered by :meth:`refresh` and not retried; what may heal
        (a network error, a version not yet published) is."""
        while self.current is None:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.refresh)
