"""Observe: what AWS and the registry hold for a set of ModelDeployments.

Reads are batched and cached so a steady pass over many deployments costs far less than
one AWS call per deployment:

- the SSM pointers: ``get_parameters``, 10 names per call;
- the ECS services: ``describe_services``, 10 per call, with their tags;
- task definitions: by ARN, cached forever (a revision is immutable);
- registry manifests: by (project, version), cached forever (versions are immutable);
- project registrations: cached for ``project_ttl`` seconds (a new revision is rare);
- ownership claims: one GET per (project, env), never cached (a claim changes hands when
  its owner is deleted, possibly by another controller).
- the newest drift result of a monitored deployment's live version: a few LISTs,
  cached for ``drift_ttl`` seconds (the job runs hourly or daily).

Problems that belong to one deployment (unknown project, unpublished version, unreadable
candidate) end up in that deployment's :attr:`Observed.error`; only a failed batch call
raises, and then for every deployment of the batch.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pydantic import ValidationError

from controller import drifted, shifts
from controller.actions import (
    ANALYSIS_STAGE,
    APPROVAL_STAGE,
    CONTAINER_NAME,
    ENV_CAPTURE_FLUSH_SECONDS,
    ENV_CAPTURE_PERCENT,
    ENV_DRIFT_PREFIX,
    ENV_ENV,
    ENV_MODEL_MANIFEST_SHA256,
    ENV_MODEL_OBJECT_VERSIONS,
    ENV_MODEL_SHA256,
    ENV_MODEL_URI,
    ENV_MODEL_VERSION,
    ENV_PROJECT,
    Rollout,
    TaskSpec,
)
from controller.api import (
    ANNOTATION_APPROVAL_REASON,
    ANNOTATION_APPROVE,
    ANNOTATION_APPROVED_BY,
    ANNOTATION_REJECT,
    ApprovalRecord,
    ModelDeployment,
    ModelDeploymentStatus,
    RolloutStatus,
)
from controller.drifted import DriftObservation, monitored
from controller.ownership import batch_winner, conflict
from controller.shifts import ShiftState
from mlops_core import aws
from mlops_core.approvals import Approvals, rollout_id
from mlops_core.artifacts import Manifest
from mlops_core.claims import Claim, Claims
from mlops_core.errors import IntegrityError, InvalidInput, MlopsError, NotFound
from mlops_core.logs import get_logger
from mlops_core.naming import Platform
from mlops_core.pointer import ModelPointer
from mlops_core.policy import Registration
from mlops_core.project import ProjectConfig
from mlops_core.promotion_log import PromotionLog
from mlops_core.publication import Pins
from mlops_core.registry import (
    Published,
    Registry,
    check_candidate_signed,
    read_candidate_manifest,
)

log = get_logger("controller.observe")

SSM_BATCH = 10  # get_parameters accepts at most 10 names
ECS_BATCH = 10  # describe_services accepts at most 10 services

COMPLETED = "COMPLETED"
IN_PROGRESS = "IN_PROGRESS"
FAILED = "FAILED"


class ProjectNotFound(NotFound):
    reason = "ProjectNotFound"


class VersionNotFound(NotFound):
    reason = "VersionNotFound"


class CandidateInvalid(InvalidInput):
    reason = "CandidateInvalid"


@dataclass(frozen=True)
class TaskDefinitionState:
    arn: str
    family: str
    revision: int
    active: bool
    spec: TaskSpec | None  # None: not a serving revision of ours (no model env vars)


@dataclass(frozen=True)
class DeploymentState:
    """One entry of an ECS service's ``deployments``."""

    id: str
    status: str  # PRIMARY | ACTIVE | INACTIVE
    task_definition: str
    rollout_state: str | None  # IN_PROGRESS | COMPLETED | FAILED
    rollout_reason: str
    desired: int
    running: int
    failed_tasks: int
    created_at: datetime | None


@dataclass(frozen=True)
class ServiceState:
    name: str
    arn: str
    status: str  # ACTIVE | DRAINING | INACTIVE
    desired_count: int
    task_definition: str
    deployments: tuple[DeploymentState, ...]
    tags: Mapping[str, str]
    # None when ECS does not report the deployment configuration: unknown, not wrong.
    min_healthy_percent: int | None
    max_percent: int | None
    circuit_breaker: bool | None
    #: Target group ARNs of the service's ``loadBalancers``.
    load_balancers: tuple[str, ...] = ()
    #: How ECS replaces revisions (None: not reported).
    deployment_strategy: Rollout | None = None
    #: The second target group of a traffic-shifting service (advancedConfiguration).
    alternate_target_group: str | None = None
    #: The listener rule whose weights ECS moves (advancedConfiguration).
    production_rule: str | None = None

    @property
    def primary(self) -> DeploymentState | None:
        return next((d for d in self.deployments if d.status == "PRIMARY"), None)

    @property
    def rollout(self) -> DeploymentState | None:
        """The deployment of the service's task definition; None until ECS has started
        one (right after an update, ECS may still list only the previous one)."""
        return next(
            (d for d in self.deployments if d.task_definition == self.task_definition), None
        )


@dataclass(frozen=True)
class Observed:
    """Everything ``plan`` may look at for one deployment; ``now`` keeps plan pure."""

    key: str
    now: datetime
    pointer: ModelPointer | None = None
    #: The env's ownership claim (None: unclaimed): who may write the env's AWS state.
    claim: Claim | None = None
    service: ServiceState | None = None
    task_definitions: Mapping[str, TaskDefinitionState] = field(default_factory=dict)
    project: ProjectConfig | None = None
    # The registration revision ``project`` is (what a promotion's pointer records).
    policy_revision: int | None = None
    # Manifests by version: the desired version's (from the registry or the candidate),
    # and those of the pointer's, the status' current and previous versions when published.
    manifests: Mapping[str, Manifest] = field(default_factory=dict)
    # The publication pins of each published version in ``manifests``.
    pins: Mapping[str, Pins] = field(default_factory=dict)
    # Versions known to be in the registry (a candidate's version may not be).
    published: frozenset[str] = frozenset()
    # The desired version, resolved (spec.model.version, or the candidate's manifest's).
    desired_version: str | None = None
    error: MlopsError | None = None
    # The newest drift result of the live version (monitored deployments only).
    drift: DriftObservation | None = None
    # The promotion log entry, below the pointer's, at which the desired version was
    # live in this env before: declaring it is a rollback (mlops_core.gates.check).
    live_at: int | None = None
    # A traffic-shifting rollout in progress (controller.shifts), and the approval
    # decision recorded for it, when it waits for one.
    shift: ShiftState | None = None
    approval: ApprovalRecord | None = None
    # How the rollout the status follows ended, when it is over: (ECS service deployment
    # status, statusReason), e.g. ("ROLLBACK_SUCCESSFUL", "alarm ... triggered").
    rollout_end: tuple[str, str] | None = None


def parse_task_definition(td: Mapping) -> TaskDefinitionState:
    """Read what a revision pins back out of ECS' description of it."""
    arn = td["taskDefinitionArn"]
    containers = td.get("containerDefinitions") or []
    container = next((c for c in containers if c.get("name") == CONTAINER_NAME), None)
    spec = None
    if container is not None:
        env = {e["name"]: e["value"] for e in container.get("environment") or []}
        ports = container.get("portMappings") or [{}]
        try:
            spec = TaskSpec(
                family=td["family"],
                project=env[ENV_PROJECT],
                env=env[ENV_ENV],
                image=container["image"],
                version=env[ENV_MODEL_VERSION],
                sha256=env[ENV_MODEL_SHA256],
                model_uri=env[ENV_MODEL_URI],
                manifest_sha256=env.get(ENV_MODEL_MANIFEST_SHA256, ""),
                object_versions=env.get(ENV_MODEL_OBJECT_VERSIONS, ""),
                cpu=int(td.get("cpu") or 0),
                memory=int(td.get("memory") or 0),
                port=int(ports[0].get("containerPort") or 0),
                capture_percent=float(env.get(ENV_CAPTURE_PERCENT) or 0),
                capture_flush_seconds=float(env.get(ENV_CAPTURE_FLUSH_SECONDS) or 0),
                drift=tuple(
                    sorted((k, v) for k, v in env.items() if k.startswith(ENV_DRIFT_PREFIX))
                ),
            )
        except (KeyError, ValueError):
            spec = None
    return TaskDefinitionState(
        arn=arn,
        family=td["family"],
        revision=int(td.get("revision") or 0),
        active=td.get("status", "ACTIVE") == "ACTIVE",
        spec=spec,
    )


def _as_datetime(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def parse_service(svc: Mapping) -> ServiceState:
    config = svc.get("deploymentConfiguration") or {}
    breaker = config.get("deploymentCircuitBreaker") or {}
    deployments = tuple(
        DeploymentState(
            id=d["id"],
            status=d.get("status", ""),
            task_definition=d.get("taskDefinition", ""),
            rollout_state=d.get("rolloutState"),
            rollout_reason=d.get("rolloutStateReason", ""),
            desired=int(d.get("desiredCount") or 0),
            running=int(d.get("runningCount") or 0),
            failed_tasks=int(d.get("failedTasks") or 0),
            created_at=_as_datetime(d.get("createdAt")),
        )
        for d in svc.get("deployments") or []
    )
    return ServiceState(
        name=svc["serviceName"],
        arn=svc["serviceArn"],
        status=svc.get("status", ""),
        desired_count=int(svc.get("desiredCount") or 0),
        task_definition=svc.get("taskDefinition", ""),
        deployments=deployments,
        tags={t["key"]: t["value"] for t in svc.get("tags") or []},
        min_healthy_percent=config.get("minimumHealthyPercent"),
        max_percent=config.get("maximumPercent"),
        circuit_breaker=bool(breaker.get("enable")) if config else None,
        load_balancers=tuple(
            lb["targetGroupArn"]
            for lb in svc.get("loadBalancers") or []
            if lb.get("targetGroupArn")
        ),
        deployment_strategy=Rollout.from_ecs(config),
        alternate_target_group=next(
            (
                adv["alternateTargetGroupArn"]
                for lb in svc.get("loadBalancers") or []
                if (adv := lb.get("advancedConfiguration") or {}).get("alternateTargetGroupArn")
            ),
            None,
        ),
        production_rule=next(
            (
                adv["productionListenerRule"]
                for lb in svc.get("loadBalancers") or []
                if (adv := lb.get("advancedConfiguration") or {}).get("productionListenerRule")
            ),
            None,
        ),
    )


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class Observer:
    """Batched, cached reads. One per controller process (the caches are its point)."""

    def __init__(
        self,
        platform: Platform,
        registry: Registry | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        project_ttl: float = 60.0,
        drift_ttl: float = 60.0,
    ):
        self.platform = platform
        self.registry = registry or Registry(self.platform)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.project_ttl = project_ttl
        self.drift_ttl = drift_ttl
        #: AWS read calls made, by operation (for benchmarks and tests).
        self.reads: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._task_definitions: dict[str, TaskDefinitionState] = {}
        self._published: dict[tuple[str, str], Published] = {}
        self._candidates: dict[tuple[str, int | None, str], Manifest] = {}
        self._projects: dict[str, tuple[float, Registration]] = {}
        self.claims = Claims(self.platform)
        # Entries below a head never change: the log caches what it read.
        self.promotions = PromotionLog(self.platform)
        self._drift: dict[tuple[str, str, str], tuple[float, DriftObservation]] = {}

    # -- public ------------------------------------------------------------------------
    def observe(
        self, deployment: ModelDeployment, status: ModelDeploymentStatus | None
    ) -> Observed:
        return self.observe_many([(deployment, status)])[0]

    def observe_many(
        self, items: list[tuple[ModelDeployment, ModelDeploymentStatus | None]]
    ) -> list[Observed]:
        now = self.clock()
        specs = [d.spec for d, _ in items]
        pointers = self._pointers({(s.project, s.env) for s in specs})
        claims = self._claims({(s.project, s.env) for s in specs})
        services = self._services({self.platform.service_name(s.project, s.env) for s in specs})
        arns: set[str] = set()
        for svc in services.values():
            arns.update(d.task_definition for d in svc.deployments)
            if svc.task_definition:
                arns.add(svc.task_definition)
        for _, st in items:
            if st is not None:
                arns.update(a for a in (st.task_definition, st.previous_task_definition) if a)
        tds = self._task_definitions_by_arn(arns)
        contenders: dict[str, list[str]] = {}
        for deployment, _ in items:
            name = self.platform.service_name(deployment.spec.project, deployment.spec.env)
            contenders.setdefault(name, [])
            if deployment.key not in contenders[name]:
                contenders[name].append(deployment.key)
        for keys in contenders.values():
            keys.sort()
        out = []
        for deployment, status in items:
            s = deployment.spec
            pointer = pointers.get((s.project, s.env))  # unreadable ones are None: rewritten
            claim = claims[(s.project, s.env)]
            service = services.get(self.platform.service_name(s.project, s.env))
            refs = [status.task_definition, status.previous_task_definition] if status else []
            if service is not None:
                refs += [service.task_definition, *(d.task_definition for d in service.deployments)]
            mine = {arn: tds[arn] for arn in refs if arn and arn in tds}
            base = Observed(
                key=deployment.key,
                now=now,
                pointer=pointer,
                claim=claim if isinstance(claim, Claim) else None,
                service=service,
                task_definitions=mine,
                drift=self.drift(deployment, pointer, status),
            )
            try:
                if isinstance(claim, MlopsError):
                    raise claim
                self._check_owner(deployment, base.claim, service, contenders)
                out.append(
                    self._shift(deployment, status, self._registry_view(deployment, status, base))
                )
            except MlopsError as exc:
                out.append(replace(base, error=exc))
        return out

    def _check_owner(
        self,
        deployment: ModelDeployment,
        claim: Claim | None,
        service: ServiceState | None,
        contenders: dict[str, list[str]],
    ) -> None:
        """Two deployments of one batch naming the same project/env: one of them may act
        (``batch_winner``); the others conflict before they plan anything."""
        name = self.platform.service_name(deployment.spec.project, deployment.spec.env)
        keys = contenders[name]
        if len(keys) < 2:
            return
        winner = batch_winner(claim, service.tags if service is not None else None, keys)
        if deployment.key != winner:
            s = deployment.spec
            raise conflict(s.project, s.env, deployment.key, winner)

    # -- AWS batches -------------------------------------------------------------------
    def _pointers(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], ModelPointer | None]:
        """The pointers; a missing or unreadable one is None (the plan rewrites it)."""
        by_name = {self.platform.pointer_param(p, e): (p, e) for p, e in pairs}
        out: dict[tuple[str, str], ModelPointer | None] = dict.fromkeys(pairs)
        ssm = aws.client("ssm")
        for names in _chunks(sorted(by_name), SSM_BATCH):
            self.reads["ssm:GetParameters"] += 1
            page = ssm.get_parameters(Names=names)
            for p in page.get("Parameters", []):
                with contextlib.suppress(ValidationError):
                    out[by_name[p["Name"]]] = ModelPointer.model_validate_json(p["Value"])
        return out

    def _claims(
        self, pairs: set[tuple[str, str]]
    ) -> dict[tuple[str, str], Claim | MlopsError | None]:
        """Each env's claim (None: unclaimed); an unreadable one is its error, which blocks
        the env's deployments. An AWS error raises, for the whole batch."""
        out: dict[tuple[str, str], Claim | MlopsError | None] = {}
        for project, env in sorted(pairs):
            self.reads["s3:GetObject(claim)"] += 1
            try:
                out[(project, env)] = self.claims.get(project, env)
            except MlopsError as exc:
                out[(project, env)] = exc
        return out

    def _services(self, names: set[str]) -> dict[str, ServiceState]:
        ecs = aws.client("ecs")
        out: dict[str, ServiceState] = {}
        for chunk in _chunks(sorted(names), ECS_BATCH):
            self.reads["ecs:DescribeServices"] += 1
            page = ecs.describe_services(
                cluster=self.platform.ecs_cluster, services=chunk, include=["TAGS"]
            )
            for svc in page.get("services", []):
                if svc.get("status") == "INACTIVE":
                    continue  # deleted: as good as missing, and may be created again
                state = parse_service(svc)
                out[state.name] = state
        return out

    def _task_definitions_by_arn(self, arns: set[str]) -> dict[str, TaskDefinitionState]:
        ecs = aws.client("ecs")
        out = {}
        for arn in sorted(arns):
            with self._lock:
                cached = self._task_definitions.get(arn)
            if cached is None:
                self.reads["ecs:DescribeTaskDefinition"] += 1
                try:
                    td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
                except ecs.exceptions.ClientException:
                    continue  # deleted (or never existed): nothing to reuse
                cached = parse_task_definition(td)
                # Only the ACTIVE flag of a revision can change (deregistration): cache
                # active ones; an inactive one is never used again anyway.
                with self._lock:
                    self._task_definitions[arn] = cached
            out[arn] = cached
        return out

    def remember_task_definition(self, arn: str, spec: TaskSpec) -> None:
        """Cache a revision this process registered (or reused): revisions are immutable,
        so the next pass need not describe it."""
        family, _, revision = arn.rpartition("/")[2].rpartition(":")
        state = TaskDefinitionState(arn, family, int(revision or 0), True, spec)
        with self._lock:
            self._task_definitions.setdefault(arn, state)

    # -- drift ---------------------------------------------------------------------------
    def drift(
        self,
        deployment: ModelDeployment,
        pointer: ModelPointer | None,
        status: ModelDeploymentStatus | None,
    ) -> DriftObservation | None:
        """The newest drift result of the live version (the pointer's, else the one the
        status last saw live); None when the deployment does not capture or nothing is
        live. Never raises: an unreadable result is an observation saying why."""
        spec = deployment.spec
        version = pointer.version if pointer else (status.current_version if status else None)
        if not monitored(spec) or version is None:
            return None
        key = (spec.project, spec.env, version)
        now = time.monotonic()
        with self._lock:
            hit = self._drift.get(key)
        if hit is not None and now - hit[0] < self.drift_ttl:
            return hit[1]
        self.reads["s3:drift"] += 1
        obs = drifted.observe(self.platform, *key)
        with self._lock:
            self._drift[key] = (now, obs)
        return obs

    def live_at(
        self, project: str, env: str, version: str, pointer: ModelPointer | None
    ) -> int | None:
        """The log entry below the pointer's at which ``version`` was live in ``env``
        (None: never, or no log). Each entry is read once per process."""
        if pointer is None or pointer.seq is None:
            return None
        before = self.promotions.entry_reads
        found = self.promotions.live_before(project, env, version, below=pointer.seq)
        if self.promotions.entry_reads != before:
            self.reads["s3:GetObject(promotion log)"] += self.promotions.entry_reads - before
        return found

    # -- registry ----------------------------------------------------------------------
    def registration(self, project: str, *, fresh: bool = False) -> Registration:
        """The project's registration in force (its head revision); ``fresh``: not from
        the cache."""
        now = time.monotonic()
        with self._lock:
            hit = self._projects.get(project)
        if not fresh and hit is not None and now - hit[0] < self.project_ttl:
            return hit[1]
        self.reads["s3:registration"] += 1
        try:
            registration = self.registry.registration(project)
        except NotFound as exc:
            raise ProjectNotFound(exc.what, hint=exc.hint) from None
        with self._lock:
            self._projects[project] = (now, registration)
        return registration

    def project_config(self, project: str) -> ProjectConfig:
        return self.registration(project).config

    def published(self, project: str, version: str) -> Published | None:
        """``version`` as its publication recorded it, verified (signature, pins, nothing
        written since); None if it is not published. A version that fails its checks
        raises IntegrityError. Cached: a verified version cannot change under its pins."""
        with self._lock:
            cached = self._published.get((project, version))
        if cached is not None:
            return cached
        self.reads["s3:GetObject(manifest)"] += 1
        try:
            published = self.registry.get_published(project, version)
        except NotFound:
            return None
        with self._lock:
            self._published[(project, version)] = published
        return published

    def manifest(self, project: str, version: str) -> Manifest | None:
        found = self.published(project, version)
        return None if found is None else found.manifest

    def candidate(self, deployment: ModelDeployment) -> Manifest:
        """The candidate's manifest, read once per generation of the deployment."""
        uri = deployment.spec.model.candidate
        assert uri is not None
        key = (deployment.key, deployment.metadata.generation, uri)
        with self._lock:
            cached = self._candidates.get(key)
        if cached is not None:
            return cached
        self.reads["candidate:manifest"] += 1
        try:
            manifest = read_candidate_manifest(uri)
            if not self.registry.exists(deployment.spec.project, manifest.version):
                # Published ones are verified as published; an unpublished one must carry
                # the publisher's signature, since the controller never signs.
                check_candidate_signed(uri, self.registry.signing_key)
        except MlopsError as exc:
            raise CandidateInvalid(
                f"cannot read the candidate: {exc.what}",
                where=f"spec.model.candidate ({uri})",
                hint=exc.hint or "point it at a complete artifacts folder ('mlopsctl train')",
            ) from None
        if manifest.project != deployment.spec.project:
            raise CandidateInvalid(
                f"the candidate belongs to project {manifest.project!r}, "
                f"not {deployment.spec.project!r}",
                where=f"spec.model.candidate ({uri})",
                hint="deploy it under its own project, or train this project's model",
            )
        with self._lock:
            self._candidates[key] = manifest
        return manifest

    def _registry_view(
        self, deployment: ModelDeployment, status: ModelDeploymentStatus | None, base: Observed
    ) -> Observed:
        spec = deployment.spec
        registration = self.registration(spec.project)
        judged = base.pointer.policy_revision if base.pointer is not None else None
        if judged is not None and judged > registration.revision:
            # The live value was judged by a newer revision than the cached one: read it
            # again before the planner takes that for deleted revisions.
            registration = self.registration(spec.project, fresh=True)
        project = registration.config
        project.check_env(spec.env)
        manifests: dict[str, Manifest] = {}
        pins: dict[str, Pins] = {}
        published: set[str] = set()
        if spec.model.candidate is not None:
            cand = self.candidate(deployment)
            version = cand.version
            done = self.published(spec.project, version)
            manifests[version] = cand
            if done is not None:
                published.add(version)
                manifests[version], pins[version] = done.manifest, done.pins
        else:
            assert spec.model.version is not None
            version = spec.model.version
            found = self.published(spec.project, version)
            if found is None:
                raise VersionNotFound(
                    f"version {version} of project {spec.project!r} is not published",
                    where="spec.model.version",
                    hint=f"publish it first ('mlopsctl publish'), or set spec.model.candidate; "
                    f"'mlopsctl models --project {spec.project}' lists published versions",
                )
            manifests[version], pins[version] = found.manifest, found.pins
            published.add(version)
        others = {base.pointer.version if base.pointer else None}
        if status is not None:
            others |= {status.current_version, status.previous_version}
        if base.service is not None:
            for d in base.service.deployments:
                td = base.task_definitions.get(d.task_definition)
                if td is not None and td.spec is not None:
                    others.add(td.spec.version)
        for v in sorted(o for o in others if o and o not in manifests):
            try:
                other = self.published(spec.project, v)
            except IntegrityError as exc:
                # Not a version to return to; the desired one may still be served.
                log.error("version failed its integrity check", key=deployment.key,
                          version=v, error=exc.render())  # fmt: skip
                continue
            if other is not None:
                manifests[v], pins[v] = other.manifest, other.pins
                published.add(v)
        return replace(
            base,
            live_at=self.live_at(spec.project, spec.env, version, base.pointer),
            project=project,
            policy_revision=registration.revision,
            manifests=manifests,
            pins=pins,
            published=frozenset(published),
            desired_version=version,
        )

    # -- progressive rollouts -----------------------------------------------------------
    def _shift(
        self, deployment: ModelDeployment, status: ModelDeploymentStatus | None, obs: Observed
    ) -> Observed:
        """The rollout in progress of a traffic-shifting service (see controller.shifts),
        and how the last one the status names ended, if it ended while nobody looked."""
        svc = obs.service
        obs = self._rollout_end(status, obs)
        strategy = svc.deployment_strategy if svc is not None else None
        if (
            svc is None
            or strategy is None
            or not strategy.shifts_traffic
            or svc.production_rule is None
            or svc.rollout is None
            or svc.rollout.rollout_state != IN_PROGRESS
        ):
            return obs
        self.reads["ecs:ListServiceDeployments"] += 1
        sd = shifts.service_deployment(self.platform, svc.arn, svc.task_definition)
        if sd is None:
            return obs
        self.reads["ecs:DescribeServiceDeployments"] += 1
        self.reads["elbv2:DescribeRules"] += 1
        state = shifts.parse(sd, shifts.rule_weights(svc.production_rule))
        spec = deployment.spec
        known = status.rollout if status is not None else None
        if known is not None and known.service_deployment != state.service_deployment:
            known = None
        hook = state.hook
        if hook is not None and hook.stage == APPROVAL_STAGE:
            return replace(obs, shift=state, approval=self._approval(deployment, state, obs))
        if (
            hook is not None
            and hook.stage == ANALYSIS_STAGE
            and spec.analysis is not None
            and known is not None
            and known.canary_target_group
            and known.stable_target_group
            and known.traffic_since is not None
            and known.canary_percent == state.percent(known.canary_target_group)
            and needs_measuring(known, hook.id, spec.analysis.failure_limit)
        ):
            canary = _version_of_arn(obs, svc.task_definition)
            stable = next(
                (
                    v
                    for d in svc.deployments
                    if d.task_definition != svc.task_definition
                    and (v := _version_of_arn(obs, d.task_definition))
                ),
                None,
            )
            if canary is not None and canary in obs.manifests:
                self.reads["cloudwatch:GetMetricData"] += 1
                measurement = shifts.measure(
                    self.platform,
                    spec.analysis,
                    rule_arn=svc.production_rule,
                    canary_group=known.canary_target_group,
                    stable_group=known.stable_target_group,
                    since=known.traffic_since,
                    now=obs.now,
                    env=spec.env,
                    canary_manifest=obs.manifests[canary],
                    stable_manifest=obs.manifests.get(stable) if stable else None,
                )
                state = replace(state, measurement=measurement)
        return replace(obs, shift=state)

    def _rollout_end(self, status: ModelDeploymentStatus | None, obs: Observed) -> Observed:
        """A rollout the status follows that is no longer active (ECS rolled it back, by an
        alarm or a hook's timeout, while no controller looked): its final status."""
        known = status.rollout if status is not None else None
        svc = obs.service
        if known is None or known.outcome is not None or svc is None:
            return obs
        if (
            svc.rollout is not None
            and svc.rollout.rollout_state == IN_PROGRESS
            and (_version_of_arn(obs, svc.task_definition) == known.canary_version)
        ):
            return obs  # still under way: _shift reads it
        self.reads["ecs:DescribeServiceDeployments"] += 1
        found = (
            aws.client("ecs")
            .describe_service_deployments(serviceDeploymentArns=[known.service_deployment])
            .get("serviceDeployments", [])
        )
        if not found:
            return obs
        sd = found[0]
        return replace(obs, rollout_end=(sd.get("status", ""), sd.get("statusReason", "")))

    def _approval(
        self, deployment: ModelDeployment, state: ShiftState, obs: Observed
    ) -> ApprovalRecord | None:
        """The decision on this rollout: a sealed record ('mlopsctl approve'/'reject'),
        else the deployment's annotation naming the version (Kubernetes RBAC decides
        who may set it)."""
        s = deployment.spec
        self.reads["s3:GetObject(approval)"] += 1
        try:
            found = Approvals(self.platform).get(s.project, s.env, state.service_deployment)
        except IntegrityError as exc:
            # Not a decision: the rollout stays where it is, and the status says so.
            held = _version_of_arn(obs, obs.service.task_definition) if obs.service else None
            raise IntegrityError(
                exc.what,
                where=exc.where,
                hint=f"{exc.hint or 'find out who wrote this object'}. Meanwhile ECS holds "
                f"the rollout of {held or 'the new revision'} at its approval pause (it rolls "
                "back after spec.approval.timeoutMinutes); once the object is removed, "
                "'mlopsctl approve' or 'reject' records a genuine decision",
            ) from None
        if found is not None:
            return ApprovalRecord(
                decision=found.decision,
                version=found.version,
                by=found.by,
                reason=found.reason,
                at=found.at,
                source=f"s3://{self.platform.artifact_bucket}/"
                + self.platform.approval_key(
                    s.project, s.env, rollout_id(state.service_deployment)
                ),
            )
        notes = deployment.metadata.annotations
        svc = obs.service
        version = _version_of_arn(obs, svc.task_definition) if svc is not None else None
        for decision, name in (("reject", ANNOTATION_REJECT), ("approve", ANNOTATION_APPROVE)):
            if version is not None and notes.get(name, "").strip() == version:
                return ApprovalRecord(
                    decision=decision,
                    version=version,
                    by=notes.get(ANNOTATION_APPROVED_BY, "").strip()[:200] or "an annotation",
                    reason=notes.get(ANNOTATION_APPROVAL_REASON, "").strip()[:500]
                    or f"annotation {name}",
                    at=obs.now,
                    source=f"annotation {name}",
                )
        return None


def needs_measuring(known: RolloutStatus, hook_id: str, failure_limit: int) -> bool:
    """Whether the step at ``hook_id`` still needs a measurement: not yet passed, and not
    failed past the failure limit (then it only needs its ROLLBACK)."""
    last = next((s for s in reversed(known.steps) if s.hook == hook_id), None)
    if last is not None and last.verdict == "Pass":
        return False
    return known.failures <= failure_limit


def _version_of_arn(obs: Observed, arn: str | None) -> str | None:
    td = obs.task_definitions.get(arn) if arn else None
    return td.spec.version if td is not None and td.spec is not None else None


ServiceView = tuple[ServiceState | None, TaskDefinitionState | None]


def service_views(platform: Platform, project: str, envs: Iterable[str]) -> dict[str, ServiceView]:
    """Each env's ECS service and the revision it runs, for read-only views such as
    ``mlopsctl status``: ``{env: (service, task definition)}``, in the order of ``envs``.

    The reads are the controller's own: ``describe_services`` 10 per call, then one
    ``describe_task_definition`` per distinct revision of a live service, so an env
    without a service costs no further call. ``(None, None)``: no service (or a deleted
    one); ``(service, None)``: its revision is gone. A missing cluster (an account not
    bootstrapped yet) means no services, not an error.
    """
    observer = Observer(platform)
    by_name = {platform.service_name(project, env): env for env in envs}
    ecs = aws.client("ecs")
    try:
        services = observer._services(set(by_name))
    except ecs.exceptions.ClusterNotFoundException:
        services = {}
    tds = observer._task_definitions_by_arn(
        {svc.task_definition for svc in services.values() if svc.task_definition}
    )
    out: dict[str, ServiceView] = {}
    for name, env in by_name.items():
        svc = services.get(name)
        out[env] = (svc, tds.get(svc.task_definition) if svc is not None else None)
    return out
