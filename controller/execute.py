"""Execute: the AWS adapters that carry out planned actions.

Every adapter is idempotent and safe to repeat after a crash at any point, because each
one looks before it writes:

- claiming an env reads its claim first and creates it only if there is none (a
  conditional create: of two claimants one wins); a claim held by another deployment
  is Conflict, raised before the plan's other actions, so the loser writes nothing;
- adopting a service is a plain overwrite of its owner tag with the same value;
- registering a task definition reuses the family's latest ACTIVE revision when it pins the
  same (image, version, digest, cpu, memory, port), so a crash between "register" and
  "update service" costs at most one extra revision;
- creating a service that already exists (a crash after create) updates it instead;
- updating a service to the task definition it already runs starts no new deployment;
- moving the pointer checks that the env's claim is the action's owner, then appends to
  the promotion log only when its head differs from the planned value (after a crash
  the head already holds it); the service tags are plain overwrites of the same value;
- publishing a candidate is the registry's own idempotent, conditional publish.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from controller import alarms, loadbalancing
from controller.actions import (
    CONTAINER_NAME,
    CPU_ARCHITECTURE,
    ENV_ENV,
    ENV_MODEL_MANIFEST_SHA256,
    ENV_MODEL_OBJECT_VERSIONS,
    ENV_MODEL_SHA256,
    ENV_MODEL_URI,
    ENV_MODEL_VERSION,
    ENV_PROJECT,
    TAG_DEPLOYMENT,
    TAG_ENV,
    TAG_FAILED_GENERATION,
    TAG_FAILED_VERSION,
    TAG_PROJECT,
    TAG_REPLICAS,
    TAG_RESTORED_VERSION,
    TAG_VERSION,
    Action,
    AdoptService,
    ClaimEnv,
    ContinueDeployment,
    CreateService,
    MovePointer,
    PublishCandidate,
    RegisterTaskDefinition,
    Rollback,
    Rollout,
    ServiceSpec,
    StopDeployment,
    TaskSpec,
    UpdateService,
    describe,
)
from controller.observe import parse_task_definition
from controller.ownership import conflict, service_label
from controller.plan import NetworkConfig
from mlops_core import aws
from mlops_core.claims import Claims
from mlops_core.errors import Conflict, IntegrityError
from mlops_core.naming import MANAGED_BY_TAG, Platform
from mlops_core.pointer import ModelPointer, now
from mlops_core.promotion_log import PromotionLog, popped, pushed
from mlops_core.publication import Pins
from mlops_core.registry import Registry

CONTROLLER_ACTOR = "mlops-controller"


@dataclass
class ExecutionReport:
    done: list[Action] = field(default_factory=list)
    #: The revision used for each task spec (registered or reused), by spec.
    task_definitions: dict[TaskSpec, str] = field(default_factory=dict)


def _tags(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in pairs.items()]


def _deployment_configuration(service: ServiceSpec) -> dict:
    return {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "minimumHealthyPercent": service.min_healthy_percent,
        "maximumPercent": service.max_percent,
        **service.rollout.ecs(),
    }


class Executor:
    """Runs actions in order against AWS (boto3 via mlops_core.aws) and the registry.

    ``after_each(action, index)`` is called after each action succeeds; tests use it to
    kill the controller between two actions.
    """

    def __init__(
        self,
        platform: Platform,
        registry: Registry,
        network: NetworkConfig,
        *,
        after_each: Callable[[Action, int], None] | None = None,
    ):
        self.platform = platform
        self.registry = registry
        self.network = network
        self.after_each = after_each
        self.log = PromotionLog(platform)
        self.claims = Claims(platform)
        #: Actions carried out, by kind (for benchmarks and tests).
        self.writes: Counter[str] = Counter()

    @property
    def _ecs(self):
        return aws.client("ecs")

    def execute(
        self,
        actions: list[Action],
        log,
        report: ExecutionReport | None = None,
        *,
        fence: Callable[[], bool] | None = None,
    ) -> ExecutionReport:
        """Run ``actions`` in order; ``report`` (pass one in to read it after an error)
        collects what was done. ``fence()`` False before an action stops the run there
        with LeaseLost: the controller may no longer write."""
        from controller.reconcile import LeaseLost

        report = report if report is not None else ExecutionReport()
        for index, action in enumerate(actions):
            if fence is not None and not fence():
                raise LeaseLost(
                    f"the lease lapsed before: {describe(action)}; not done",
                    hint="another controller may hold the source now; this one retries "
                    "once it holds the lease again",
                )
            alog = log.bind(action=type(action).__name__)
            alog.info("executing", what=describe(action))
            self._run(action, report, alog)
            self.writes[type(action).__name__] += 1
            report.done.append(action)
            if self.after_each is not None:
                self.after_each(action, index)
        return report

    def _run(self, action: Action, report: ExecutionReport, log) -> None:
        match action:
            case ClaimEnv():
                self.claim(action, log)
            case AdoptService():
                self.adopt(action, log)
            case PublishCandidate():
                self.publish(action, log)
            case RegisterTaskDefinition(task=spec):
                report.task_definitions[spec] = self.register(spec, log)
            case CreateService():
                arn = self._arn_for(action.task, action.task_definition, report, log)
                report.task_definitions[action.task] = arn
                self.create_service(action, arn, log)
            case UpdateService():
                arn = self._arn_for(action.task, action.task_definition, report, log)
                report.task_definitions[action.task] = arn
                attach = (
                    self._load_balancing(action.task, action.service.rollout)
                    if action.attach_load_balancer
                    else {}
                )
                self._guard(action.task, action.service.rollout, log)
                self.update_service(action.service, arn, action.force, action.scale, **attach)
            case MovePointer():
                self.move_pointer(action)
            case Rollback():
                self.record_rollback(action)
            case ContinueDeployment():
                self.continue_deployment(action, log)
            case StopDeployment():
                self.stop_deployment(action, log)

    # -- adapters ----------------------------------------------------------------------
    def claim(self, action: ClaimEnv, log) -> None:
        held = self.claims.create(action.project, action.env, action.owner, action.source)
        if held.owner != action.owner:
            # Lost the race (both saw the env unclaimed): stop before any other write.
            raise conflict(action.project, action.env, action.owner, held.owner)
        log.info("env claimed", owner=held.owner, since=f"{held.created_at:%Y-%m-%dT%H:%M:%SZ}")

    def adopt(self, action: AdoptService, log) -> None:
        self._ecs.tag_resource(
            resourceArn=action.service_arn,
            tags=_tags(
                {
                    MANAGED_BY_TAG[0]: MANAGED_BY_TAG[1],
                    TAG_DEPLOYMENT: action.owner,
                    TAG_PROJECT: action.project,
                    TAG_ENV: action.env,
                }
            ),
        )
        log.info("service adopted", service=action.service_arn, owner=action.owner)

    def _check_claim(self, project: str, env: str, owner: str, what: str) -> None:
        """Refuse a write to an env whose claim is not ``owner``'s (one GET)."""
        held = self.claims.get(project, env)
        if held is None:
            raise Conflict(
                f"{project}/{env} is not claimed by {owner}; not done: {what}",
                where=self.claims.uri(project, env),
                hint="the claim was released meanwhile (its deployment deleted); the next "
                "pass claims it again first",
            )
        if held.owner != owner:
            raise conflict(project, env, owner, held.owner)

    def publish(self, action: PublishCandidate, log) -> None:
        # sign=False: the controller publishes only candidates signed by the publisher.
        result = self.registry.publish_uri(action.uri, exist_ok=True, sign=False)
        if result.version != action.version:
            raise IntegrityError(
                f"the candidate now holds version {result.version}, planned {action.version}",
                where=action.uri,
                hint="the folder changed while deploying; the next pass uses its new version",
            )
        log.info("published", version=result.version, created=result.created)

    def latest_matching(self, spec: TaskSpec) -> str | None:
        """The family's latest ACTIVE revision, if it pins exactly ``spec``."""
        try:
            td = self._ecs.describe_task_definition(taskDefinition=spec.family)["taskDefinition"]
        except self._ecs.exceptions.ClientException:
            return None  # no ACTIVE revision of the family yet
        state = parse_task_definition(td)
        return state.arn if state.active and state.spec == spec else None

    def register(self, spec: TaskSpec, log) -> str:
        existing = self.latest_matching(spec)
        if existing is not None:
            log.info("task definition reused", task_definition=existing)
            return existing
        # The same container as Terraform's first revision (infra/terraform/ecs.tf), plus
        # the pinned model.
        env = {
            ENV_MODEL_URI: spec.model_uri,
            ENV_MODEL_SHA256: spec.sha256,
            ENV_MODEL_MANIFEST_SHA256: spec.manifest_sha256,
            ENV_MODEL_OBJECT_VERSIONS: spec.object_versions,
            ENV_MODEL_VERSION: spec.version,
            ENV_PROJECT: spec.project,
            ENV_ENV: spec.env,
            "PORT": str(spec.port),
            "MLOPS_PLATFORM": self.platform.platform,
            "MLOPS_ARTIFACT_BUCKET": self.platform.artifact_bucket,
            "AWS_REGION": self.platform.region,
            "AWS_DEFAULT_REGION": self.platform.region,
            **spec.monitoring_environment(),
        }
        if self.platform.signing_key:
            env["MLOPS_SIGNING_KEY"] = self.platform.signing_key
        container: dict = {
            "name": CONTAINER_NAME,
            "image": spec.image,
            "essential": True,
            "readonlyRootFilesystem": True,
            "portMappings": [{"name": "http", "containerPort": spec.port, "protocol": "tcp"}],
            "environment": [{"name": k, "value": v} for k, v in env.items()],
            # The root filesystem is read-only; the model cache lives on task storage.
            "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],
        }
        kwargs: dict = {}
        if self.network.execution_role_arn:
            # awslogs needs the execution role (it also pulls the image from ECR).
            kwargs["executionRoleArn"] = self.network.execution_role_arn
            container["logConfiguration"] = {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.platform.log_group(spec.project, spec.env),
                    "awslogs-region": self.platform.region,
                    "awslogs-stream-prefix": CONTAINER_NAME,
                    "awslogs-create-group": "true",
                },
            }
        if self.network.task_role_arn:
            kwargs["taskRoleArn"] = self.network.task_role_arn
        td = self._ecs.register_task_definition(
            family=spec.family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu=str(spec.cpu),
            memory=str(spec.memory),
            runtimePlatform={"operatingSystemFamily": "LINUX", "cpuArchitecture": CPU_ARCHITECTURE},
            volumes=[{"name": "tmp"}],
            containerDefinitions=[container],
            tags=_tags(
                {
                    MANAGED_BY_TAG[0]: MANAGED_BY_TAG[1],
                    TAG_PROJECT: spec.project,
                    TAG_ENV: spec.env,
                    TAG_VERSION: spec.version,
                    **self.platform.cost_tags(spec.project, spec.env),
                }
            ),
            **kwargs,
        )["taskDefinition"]
        log.info("task definition registered", task_definition=td["taskDefinitionArn"])
        return td["taskDefinitionArn"]

    def _arn_for(self, spec: TaskSpec, planned: str | None, report: ExecutionReport, log) -> str:
        """The revision to run: planned, registered earlier in this run, or (after a
        crash between register and this action) the family's matching latest one."""
        if planned is not None:
            return planned
        if spec in report.task_definitions:
            return report.task_definitions[spec]
        return self.register(spec, log)

    def _describe_service(self, name: str) -> dict | None:
        page = self._ecs.describe_services(cluster=self.platform.ecs_cluster, services=[name])
        for svc in page.get("services", []):
            if svc.get("status") == "ACTIVE":
                return svc
        return None

    def _load_balancing(self, task: TaskSpec, rollout: Rollout) -> dict:
        """``loadBalancers`` (the env's serving target group, found or ensured) and the
        grace period a new task has to load its model before health checks count; for a
        traffic-shifting strategy, the second target group and the production listener
        rule whose weights ECS moves (``advancedConfiguration``)."""
        group = loadbalancing.target_group(
            self.network.load_balancers,  # type: ignore[arg-type]
            self.platform,
            task.project,
            task.env,
            port=task.port,
            subnets=self.network.subnets,
            security_groups=self.network.security_groups,
        )
        if not rollout.shifts_traffic:
            # After a Canary, Linear or BlueGreen rollout production traffic may go to the
            # green group: a Rolling service registers where the production rule forwards.
            group = loadbalancing.live_target_group(self.platform, task.project, task.env) or group
        lb: dict = {"targetGroupArn": group, "containerName": CONTAINER_NAME,
                    "containerPort": task.port}  # fmt: skip
        if rollout.shifts_traffic:
            lb["advancedConfiguration"] = loadbalancing.traffic_shifting(
                self.network.load_balancers,  # type: ignore[arg-type]
                self.platform,
                task.project,
                task.env,
                role_arn=self.network.infrastructure_role_arn,
            )
        return {
            "loadBalancers": [lb],
            "healthCheckGracePeriodSeconds": loadbalancing.HEALTH_CHECK_GRACE_SECONDS
            if self.network.health_check_grace_seconds is None
            else self.network.health_check_grace_seconds,
        }

    def _guard(self, task: TaskSpec, rollout: Rollout, log) -> None:
        """Point the rollout's alarm at the target group the new revision will take, before
        ECS starts it (controller.alarms)."""
        if not rollout.alarms:
            return
        name = alarms.point_canary_alarm(
            self.platform, task.project, task.env, rollout.alarm_error_rate
        )
        log.info("rollout alarm set", alarm=name, threshold=rollout.alarm_error_rate)

    def create_service(self, action: CreateService, arn: str, log) -> None:
        s = action.service
        if self._describe_service(s.name) is not None:
            log.info("service exists already; updating it instead", service=s.name)
            self.update_service(s, arn, force=False, scale=True)
            return
        extra = self._load_balancing(action.task, s.rollout) if s.load_balanced else {}
        self._guard(action.task, s.rollout, log)
        net = self.network
        self._ecs.create_service(
            cluster=self.platform.ecs_cluster,
            serviceName=s.name,
            taskDefinition=arn,
            desiredCount=s.replicas,
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": list(net.subnets),
                    "securityGroups": list(net.security_groups),
                    "assignPublicIp": "ENABLED" if net.assign_public_ip else "DISABLED",
                }
            },
            deploymentConfiguration=_deployment_configuration(s),
            deploymentController={"type": "ECS"},
            propagateTags="SERVICE",
            enableECSManagedTags=True,
            tags=_tags(
                {
                    MANAGED_BY_TAG[0]: MANAGED_BY_TAG[1],
                    TAG_DEPLOYMENT: action.deployment_key,
                    TAG_REPLICAS: str(s.replicas),
                    TAG_PROJECT: action.task.project,
                    TAG_ENV: action.task.env,
                    # Propagated to the tasks (propagateTags), which Fargate bills.
                    **self.platform.cost_tags(action.task.project, action.task.env),
                }
            ),
            **extra,
        )
        log.info("service created", service=s.name, task_definition=arn)

    def update_service(
        self, service: ServiceSpec, arn: str, force: bool, scale: bool, **extra
    ) -> None:
        kwargs = {"desiredCount": service.replicas} if scale else {}
        kwargs.update(extra)
        updated = self._ecs.update_service(
            cluster=self.platform.ecs_cluster,
            service=service.name,
            taskDefinition=arn,
            deploymentConfiguration=_deployment_configuration(service),
            forceNewDeployment=force,
            **kwargs,
        )["service"]
        if scale:  # recorded after the count is set: a crash in between only repeats it
            self._ecs.tag_resource(
                resourceArn=updated["serviceArn"],
                tags=_tags({TAG_REPLICAS: str(service.replicas)}),
            )

    def retire(self, deployment_key: str, project: str, env: str, scale_to_zero: bool) -> bool:
        """``deployment_key`` was deleted: scale its service to zero if asked, then release
        the env's claim if it is the key's, so that another deployment can adopt the env.
        Returns whether anything changed; safe to repeat."""
        held = self.claims.get(project, env)
        if held is not None and held.owner != deployment_key:
            return False  # another deployment owns the env now: touch nothing
        changed = False
        if scale_to_zero:
            name = self.platform.service_name(project, env)
            changed = self.scale_to_zero(deployment_key, name, claimed=held is not None)
        # Released last: a crash before this leaves the claim, and the retry repeats.
        if held is not None and self.claims.release(project, env, deployment_key):
            self.writes["ReleaseClaim"] += 1
            changed = True
        return changed

    def scale_to_zero(self, deployment_key: str, service: str, *, claimed: bool = False) -> bool:
        """Scale ``service`` to zero tasks if it is ``deployment_key``'s: ``claimed`` (the
        caller checked the env's claim), else by its label (an env from before claims:
        the tag names the key, or none). Returns whether anything changed; safe to repeat."""

        found = self._ecs.describe_services(
            cluster=self.platform.ecs_cluster, services=[service], include=["TAGS"]
        )
        live = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
        if not live:
            return False
        tags = {t["key"]: t["value"] for t in live[0].get("tags", [])}
        label = service_label(tags)
        if not claimed and label is not None and label != deployment_key:
            return False  # another deployment (another namespace) owns the service now
        if live[0].get("desiredCount", 0) == 0:
            return False
        self._ecs.update_service(cluster=self.platform.ecs_cluster, service=service, desiredCount=0)
        self.writes["ScaleToZero"] += 1
        return True

    def move_pointer(self, action: MovePointer) -> None:
        """Append the planned value to the promotion log (then SSM). A head that already
        holds it (a repeat after a crash) appends nothing; a restore to the value the
        head returns to is a rollback entry copied from it, so the log stays a stack.
        Another writer appending first is Conflict: the next pass re-plans."""
        project, env = action.project, action.env
        self._check_claim(project, env, action.owner, describe(action))
        pins = Pins.from_values(action.manifest_sha256, action.object_versions, "MovePointer")
        planned = (action.version, action.sha256, action.uri, pins)
        head = self.log.head(project, env)
        if (
            head is not None
            and (head.version, head.sha256, head.uri, head.pins) == planned
            and head.owner == action.owner
        ):
            return
        update = {
            "promoted_at": now(),
            "promoted_by": CONTROLLER_ACTOR,
            "reason": action.reason,
            "owner": action.owner,
        }
        if action.action == "rollback" and head is not None and head.back is not None:
            target = self.log.entry(project, env, head.back)
            if (
                target is not None
                and (
                    target.version,
                    target.sha256,
                    target.uri,
                    target.pins,
                )
                == planned
            ):
                self.log.write(project, env, popped(head, target, **update))
                return
        value = ModelPointer(
            version=action.version,
            uri=action.uri,
            sha256=action.sha256,
            action=action.action,
            pins=pins,
            gates=None if action.gates is None else dict(action.gates),
            policy_revision=action.policy_revision,
            approval=None if action.approval is None else dict(action.approval),
            **update,
        )
        self.log.write(project, env, pushed(head, value))

    def continue_deployment(self, action: ContinueDeployment, log) -> None:
        """Answer a PAUSE hook. A hook already answered (a repeat after a crash, or ECS's
        own timeout first) is not an error: the next pass sees where ECS went."""
        self._check_claim(action.project, action.env, action.owner, describe(action))
        try:
            self._ecs.continue_service_deployment(
                serviceDeploymentArn=action.service_deployment,
                hookId=action.hook_id,
                action=action.action,
            )
        except ClientError as exc:
            if aws.error_code(exc) not in ("InvalidParameterException", "ConflictException"):
                raise
            log.info("hook already answered", hook=action.hook_id, error=str(exc)[:200])
            return
        log.info("hook answered", hook=action.hook_id, action=action.action,
                 reason=action.reason[:300])  # fmt: skip

    def stop_deployment(self, action: StopDeployment, log) -> None:
        """Roll back a rollout in progress. One that has ended meanwhile (or is already
        stopping: a repeat after a crash) is not an error: the next pass sees where ECS
        went."""
        self._check_claim(action.project, action.env, action.owner, describe(action))
        try:
            self._ecs.stop_service_deployment(
                serviceDeploymentArn=action.service_deployment, stopType="ROLLBACK"
            )
        except ClientError as exc:
            if aws.error_code(exc) not in ("InvalidParameterException", "ConflictException"):
                raise
            log.info("rollout already ended or stopping", error=str(exc)[:200])
            return
        log.info("rollout stopped", action="ROLLBACK", reason=action.reason[:300])

    def record_rollback(self, action: Rollback) -> None:
        self._ecs.tag_resource(
            resourceArn=action.service_arn,
            tags=_tags(
                {
                    TAG_FAILED_VERSION: action.failed_version,
                    TAG_FAILED_GENERATION: str(action.generation),
                    TAG_RESTORED_VERSION: action.restored_version,
                }
            ),
        )
