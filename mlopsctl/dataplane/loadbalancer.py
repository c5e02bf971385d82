"""The local Application Load Balancer: each listener answers on a loopback port.

It reads the load balancers, listeners, rules and target groups through the endpoint
(ELBv2's own API, as configured by Terraform, the controller or anyone) and serves each
HTTP listener of an application load balancer on ``127.0.0.1:{free port}``, written on
the listener as the tag :data:`~mlops_core.naming.LOCAL_ENDPOINT_TAG` so that clients
find it through the same API they would read a DNS name from.

Like an ALB:

- rules in priority order (path-pattern, host-header, http-header, http-request-method,
  query-string, source-ip conditions), then the default action; ``forward`` to one target
  group or to weighted ones (``ForwardConfig``, smooth weighted round robin, so shares are
  exact), ``fixed-response`` and ``redirect``;
- health checks per target group with its own path, port, matcher, interval, timeout and
  thresholds (intervals and timeouts at the data plane's time scale); targets are
  ``initial`` until they pass, then ``healthy``/``unhealthy``; what it measures is what
  DescribeTargetHealth reports;
- requests go to healthy targets only (round robin, or least outstanding requests when
  the target group says so); with none, 503 (an ALB would "fail open" to unhealthy
  targets; here a task that never passed its checks is never sent a request); a target
  that refuses or drops the connection, 502; one that does not answer in time, 504;
- a deregistered target drains: no new requests, the ones in flight finish, for the target
  group's deregistration delay (kept by the endpoint; ECS waits for it before stopping the
  task), and until this load balancer has read it draining and has nothing in flight to
  it, however late a busy machine lets it read.

Targets are reached only through :class:`~mlopsctl.dataplane.network.LocalNetwork`, so
nothing is ever sent beyond the loopback interface.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn

from mlops_core.logs import get_logger
from mlops_core.naming import LOCAL_ENDPOINT_TAG
from mlopsctl.dataplane import moto_bridge as bridge
from mlopsctl.dataplane.albmetrics import AlbMetrics
from mlopsctl.dataplane.clients import Clients
from mlopsctl.dataplane.network import LOOPBACK, LocalNetwork
from mlopsctl.dataplane.settings import DataPlaneSettings

log = get_logger("dataplane.lb")

# Where _handle leaves the target group it chose, for the metrics of that group.
TARGET_GROUP_SCOPE_KEY = "mlops.target_group"

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade",
}  # fmt: skip
IDLE_TIMEOUT = 60.0  # seconds, an ALB's default
# Pooled connections to targets expire before a target's own keep-alive timeout (uvicorn:
# 5 s), so a request is never sent on a connection the target is closing.
KEEPALIVE_EXPIRY = 2.0
STATUS_TEXT = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
    404: "Not Found",
}


def error_page(status: int) -> bytes:
    text = f"{status} {STATUS_TEXT.get(status, '')}".strip()
    return (
        f"<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n"
        f"<center><h1>{text}</h1></center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def _in_network(client: ipaddress.IPv4Address | ipaddress.IPv6Address, cidr: str) -> bool:
    """Whether a source-ip condition's CIDR holds ``client``; one that does not parse
    matches nothing (ELBv2 validates it on AWS; the local endpoint stores what it is given)."""
    try:
        return client in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        log.warning("ignoring an invalid source-ip CIDR in a listener rule", cidr=cidr)
        return False


def _matches(code: int, matcher: str) -> bool:
    for part in matcher.split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-", 1)
            if int(low) <= code <= int(high):
                return True
        elif part and int(part) == code:
            return True
    return False


# -- state ---------------------------------------------------------------------------------
@dataclass
class Target:
    id: str
    port: int
    state: str = "initial"
    reason: str | None = bridge.INITIAL[1]
    description: str | None = bridge.INITIAL[2]
    successes: int = 0
    failures: int = 0
    in_flight: int = 0
    next_check: float = 0.0
    checking: bool = False


@dataclass
class HealthCheck:
    enabled: bool = True
    path: str = "/"
    port: str = "traffic-port"
    interval: float = 30.0
    timeout: float = 5.0
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"


@dataclass
class Group:
    arn: str
    check: HealthCheck
    algorithm: str = "round_robin"
    targets: dict[str, Target] = field(default_factory=dict)
    turn: int = 0

    def pick(self) -> Target | None:
        # Healthy targets only. (An ALB whose targets are all unhealthy "fails open" and
        # routes to them anyway; here a target that is not healthy never gets a request,
        # so a task that never passed its checks is never seen by a client: 503 instead.)
        pool = [t for t in self.targets.values() if t.state == "healthy"]
        if not pool:
            return None
        if self.algorithm == "least_outstanding_requests":
            return min(pool, key=lambda t: t.in_flight)
        self.turn += 1
        return pool[self.turn % len(pool)]

    def has_healthy(self) -> bool:
        return any(t.state == "healthy" for t in self.targets.values())


@dataclass
class Listener:
    arn: str
    port: int  # the listener's own port (80, 443)
    local_port: int
    default_actions: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    server: uvicorn.Server
    task: asyncio.Task
    weights: dict[tuple[int, ...], dict[str, int]] = field(default_factory=dict)


class LoadBalancers:
    def __init__(self, settings: DataPlaneSettings, clients: Clients, network: LocalNetwork):
        self.settings = settings
        self.clients = clients
        self.network = network
        self.listeners: dict[str, Listener] = {}
        self.groups: dict[str, Group] = {}
        self.http: httpx.AsyncClient | None = None
        self.ready = threading.Event()
        self.metrics = AlbMetrics()
        # When the read applied last began (monotonic): a drain ends only after it.
        self.viewed_at = 0.0

    def in_flight(self, target_group_arn: str, target_id: str) -> int:
        """Requests in flight to a target (for the drain: :mod:`.moto_bridge`)."""
        group = self.groups.get(target_group_arn)
        target = group.targets.get(target_id) if group is not None else None
        return target.in_flight if target is not None else 0

    # -- the loop ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(IDLE_TIMEOUT, connect=10.0),
            limits=httpx.Limits(max_connections=512, keepalive_expiry=KEEPALIVE_EXPIRY),
            follow_redirects=False,
        )
        checker = asyncio.create_task(self._health_loop())
        publisher = asyncio.create_task(self._metrics_loop(stop))
        try:
            while not stop.is_set():
                try:
                    started = time.monotonic()
                    config = await asyncio.to_thread(self._read)
                    await self._apply(config)
                    self.viewed_at = started
                except Exception as exc:  # noqa: BLE001 - keep serving what is known
                    log.warning("cannot read the load balancers", error=str(exc))
                self.ready.set()
                await asyncio.sleep(self.settings.lb_refresh_seconds)
        finally:
            checker.cancel()
            publisher.cancel()
            for listener in list(self.listeners.values()):
                await self._close(listener)
            await self.http.aclose()

    def _read(self) -> dict[str, Any]:
        """Everything the load balancers need, through the endpoint (a worker thread)."""
        elb = self.clients("elbv2")
        lbs = [
            lb
            for page in elb.get_paginator("describe_load_balancers").paginate()
            for lb in page["LoadBalancers"]
            if lb.get("Type", "application") == "application"
        ]
        listeners = []
        for lb in lbs:
            for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])[
                "Listeners"
            ]:
                if listener.get("Protocol") not in ("HTTP", "HTTPS"):
                    continue
                rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
                tags = elb.describe_tags(ResourceArns=[listener["ListenerArn"]])["TagDescriptions"]
                listener["_rules"] = [r for r in rules if not r.get("IsDefault")]
                listener["_tags"] = {t["Key"]: t["Value"] for d in tags for t in d.get("Tags", [])}
                listeners.append(listener)
        groups = {}
        for page in elb.get_paginator("describe_target_groups").paginate():
            for group in page["TargetGroups"]:
                arn = group["TargetGroupArn"]
                attributes = elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
                group["_attributes"] = {a["Key"]: a["Value"] for a in attributes}
                group["_targets"] = elb.describe_target_health(TargetGroupArn=arn)[
                    "TargetHealthDescriptions"
                ]
                groups[arn] = group
        return {"listeners": listeners, "groups": groups}

    async def _apply(self, config: dict[str, Any]) -> None:
        for arn, doc in config["groups"].items():
            group = self.groups.get(arn)
            check = HealthCheck(
                enabled=bool(doc.get("HealthCheckEnabled", True)),
                path=doc.get("HealthCheckPath") or "/",
                port=str(doc.get("HealthCheckPort") or "traffic-port"),
                interval=self.settings.scaled(float(doc.get("HealthCheckIntervalSeconds") or 30)),
                timeout=self.settings.timeout(float(doc.get("HealthCheckTimeoutSeconds") or 5)),
                healthy_threshold=int(doc.get("HealthyThresholdCount") or 5),
                unhealthy_threshold=int(doc.get("UnhealthyThresholdCount") or 2),
                matcher=(doc.get("Matcher") or {}).get("HttpCode") or "200",
            )
            algorithm = doc["_attributes"].get("load_balancing.algorithm.type", "round_robin")
            if group is None:
                group = self.groups[arn] = Group(arn, check, algorithm)
            group.check, group.algorithm = check, algorithm
            present = set()
            for d in doc["_targets"]:
                target_id = d["Target"]["Id"]
                port = int(d["Target"].get("Port") or doc.get("Port") or 80)
                state = d["TargetHealth"]["State"]
                if state == "unused":
                    continue
                present.add(target_id)
                target = group.targets.get(target_id)
                if target is None or (target.state == "draining" and state != "draining"):
                    target = group.targets[target_id] = Target(target_id, port)
                    target.next_check = time.monotonic()
                if state == "draining":
                    target.state = "draining"
            for gone in set(group.targets) - present:
                del group.targets[gone]
        for gone in set(self.groups) - set(config["groups"]):
            del self.groups[gone]
        wanted = {listener["ListenerArn"]: listener for listener in config["listeners"]}
        for arn in set(self.listeners) - set(wanted):
            await self._close(self.listeners.pop(arn))
        for arn, doc in wanted.items():
            listener = self.listeners.get(arn)
            rules = sorted(doc["_rules"], key=lambda r: int(r["Priority"]))
            if listener is None:
                listener = await self._open(doc, rules)
                if listener is None:
                    continue
            listener.default_actions = doc.get("DefaultActions") or []
            listener.rules = rules
            url = f"http://{LOOPBACK}:{listener.local_port}"
            if doc["_tags"].get(LOCAL_ENDPOINT_TAG) != url:
                await asyncio.to_thread(
                    self.clients("elbv2").add_tags,
                    ResourceArns=[arn],
                    Tags=[{"Key": LOCAL_ENDPOINT_TAG, "Value": url}],
                )

    async def _open(self, doc: dict[str, Any], rules: list[dict[str, Any]]) -> Listener | None:
        arn = doc["ListenerArn"]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))  # loopback only
        sock.listen(512)
        sock.setblocking(False)
        local_port = sock.getsockname()[1]
        holder: dict[str, Listener] = {}

        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                await self._measured(holder["listener"], scope, receive, send)

        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=int(IDLE_TIMEOUT),
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        listener = Listener(
            arn,
            int(doc.get("Port") or 80),
            local_port,
            doc.get("DefaultActions") or [],
            rules,
            server,
            task,
        )
        holder["listener"] = listener
        self.listeners[arn] = listener
        log.info(
            "listener serving",
            listener=arn,
            port=listener.port,
            url=f"http://{LOOPBACK}:{local_port}",
        )
        return listener

    async def _close(self, listener: Listener) -> None:
        listener.server.should_exit = True
        try:
            await asyncio.wait_for(listener.task, timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            listener.task.cancel()

    async def _metrics_loop(self, stop: threading.Event) -> None:
        cloudwatch = self.clients("cloudwatch")
        try:
            while not stop.is_set():
                await asyncio.sleep(self.settings.lb_metrics_seconds)
                await asyncio.to_thread(self.metrics.flush, cloudwatch)
        finally:
            # What the last seconds counted, before the endpoint goes away.
            await asyncio.shield(asyncio.to_thread(self.metrics.flush, cloudwatch))

    # -- health checks -----------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            now = time.monotonic()
            for group in list(self.groups.values()):
                for target in list(group.targets.values()):
                    if target.state == "draining" or target.checking or target.next_check > now:
                        continue
                    target.checking = True
                    target.next_check = now + group.check.interval
                    asyncio.create_task(self._check(group, target))
            await asyncio.sleep(0.05)

    async def _check(self, group: Group, target: Target) -> None:
        check = group.check
        try:
            if not check.enabled:
                self._set(
                    group,
                    target,
                    "unavailable",
                    "Target.HealthCheckDisabled",
                    "Health checks are disabled",
                )
                return
            port = target.port if check.port == "traffic-port" else int(check.port)
            address = self.network.resolve(target.id, port)
            ok, reason, description = False, "Target.FailedHealthChecks", "Health checks failed"
            if address is not None:
                assert self.http is not None
                try:
                    r = await self.http.get(
                        f"http://{address[0]}:{address[1]}{check.path}",
                        timeout=min(check.timeout, check.interval),
                    )
                    ok = _matches(r.status_code, check.matcher)
                    if not ok:
                        reason = "Target.ResponseCodeMismatch"
                        description = f"Health checks failed with these codes: [{r.status_code}]"
                except httpx.TimeoutException:
                    reason, description = "Target.Timeout", "Request timed out"
                except httpx.HTTPError:
                    pass
            if ok:
                target.successes, target.failures = target.successes + 1, 0
                if target.state != "healthy" and target.successes >= check.healthy_threshold:
                    self._set(group, target, "healthy", None, None)
            else:
                target.failures, target.successes = target.failures + 1, 0
                failing = target.failures >= check.unhealthy_threshold
                if failing or target.state == "unhealthy":  # an unhealthy one keeps its reason
                    self._set(group, target, "unhealthy", reason, description)
        finally:
            target.checking = False

    def _set(
        self, group: Group, target: Target, state: str, reason: str | None, description: str | None
    ) -> None:
        if target.state == "draining" or group.targets.get(target.id) is not target:
            return  # deregistered meanwhile: the endpoint reports draining
        changed = target.state != state
        target.state, target.reason, target.description = state, reason, description
        bridge.set_target_health(group.arn, target.id, state, reason, description)
        if changed:
            log.info(
                "target health",
                target_group=group.arn.rpartition("/")[0].rpartition("/")[2],
                target=target.id,
                state=state,
                reason=description,
            )

    # -- requests ----------------------------------------------------------------------
    def _action(
        self, listener: Listener, scope: dict, headers: dict[str, str]
    ) -> tuple[tuple[int, ...], list[dict]]:
        for rule in listener.rules:
            if all(self._condition(c, scope, headers) for c in rule.get("Conditions") or []):
                return (int(rule["Priority"]),), rule.get("Actions") or []
        return (), listener.default_actions

    @staticmethod
    def _condition(condition: dict[str, Any], scope: dict, headers: dict[str, str]) -> bool:
        field_ = condition.get("Field")
        if field_ == "path-pattern":
            values = (
                (condition.get("PathPatternConfig") or {}).get("Values")
                or condition.get("Values")
                or []
            )
            return any(fnmatch.fnmatchcase(scope["path"], v) for v in values)
        if field_ == "host-header":
            values = (
                (condition.get("HostHeaderConfig") or {}).get("Values")
                or condition.get("Values")
                or []
            )
            host = headers.get("host", "").split(":")[0].lower()
            return any(fnmatch.fnmatch(host, v.lower()) for v in values)
        if field_ == "http-header":
            config = condition.get("HttpHeaderConfig") or {}
            value = headers.get(str(config.get("HttpHeaderName", "")).lower())
            return value is not None and any(
                fnmatch.fnmatch(value.lower(), v.lower()) for v in config.get("Values") or []
            )
        if field_ == "http-request-method":
            return scope["method"] in (
                (condition.get("HttpRequestMethodConfig") or {}).get("Values") or []
            )
        if field_ == "query-string":
            query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
            for pair in (condition.get("QueryStringConfig") or {}).get("Values") or []:
                key, value = pair.get("Key"), pair.get("Value", "")
                if any((key is None or k == key) and fnmatch.fnmatch(v, value) for k, v in query):
                    return True
            return False
        if field_ == "source-ip":
            client = ipaddress.ip_address((scope.get("client") or (LOOPBACK, 0))[0])
            values = (condition.get("SourceIpConfig") or {}).get("Values") or []
            return any(_in_network(client, v) for v in values)
        return False

    def _forward_group(
        self, listener: Listener, key: tuple[int, ...], action: dict[str, Any]
    ) -> Group | None:
        config = action.get("ForwardConfig") or {}
        weighted = [
            (g["TargetGroupArn"], int(g.get("Weight", 1)))
            for g in config.get("TargetGroups") or []
            if int(g.get("Weight", 1)) > 0
        ]
        if not weighted and action.get("TargetGroupArn"):
            weighted = [(action["TargetGroupArn"], 1)]
        if not weighted:
            return None
        # Smooth weighted round robin: each group's share is exact over any run of
        # sum(weights) requests, and requests interleave rather than come in bursts.
        current = listener.weights.setdefault(key, {})
        total = sum(w for _, w in weighted)
        for arn, weight in weighted:
            current[arn] = current.get(arn, 0) + weight
        chosen = max(weighted, key=lambda item: current[item[0]])[0]
        current[chosen] -= total
        group = self.groups.get(chosen)
        if group is not None and not group.has_healthy():
            # No healthy target there: another weighted group that has one takes it.
            for arn, _ in weighted:
                other = self.groups.get(arn)
                if other is not None and other.has_healthy():
                    return other
        return group

    async def _measured(self, listener: Listener, scope: dict, receive: Any, send: Any) -> None:
        """:meth:`_handle`, counted for CloudWatch as an ALB counts (see albmetrics)."""
        started = time.perf_counter()
        seen: dict[str, Any] = {}

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = int(message["status"])
                # What the load balancer answers itself carries its server header.
                seen["from_target"] = (b"server", b"awselb/2.0") not in message.get("headers", [])
                seen["seconds"] = time.perf_counter() - started
            await send(message)

        try:
            await self._handle(listener, scope, receive, counting_send)
        finally:
            if "status" in seen:
                self.metrics.record(
                    listener.arn,
                    scope.get(TARGET_GROUP_SCOPE_KEY),
                    seen["status"],
                    from_target=seen["from_target"],
                    seconds=seen["seconds"],
                )

    async def _handle(self, listener: Listener, scope: dict, receive: Any, send: Any) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key, actions = self._action(listener, scope, headers)
        action = next((a for a in sorted(actions, key=lambda a: int(a.get("Order", 1)))), None)
        if action is None:
            await self._error(send, 503)
            return
        kind = action.get("Type")
        if kind == "fixed-response":
            config = action.get("FixedResponseConfig") or {}
            body = str(config.get("MessageBody") or "").encode()
            await self._reply(
                send,
                int(config.get("StatusCode", 200)),
                body,
                config.get("ContentType", "text/plain"),
            )
            return
        if kind == "redirect":
            await self._redirect(listener, scope, headers, action.get("RedirectConfig") or {}, send)
            return
        group = self._forward_group(listener, key, action) if kind == "forward" else None
        if group is not None:
            scope[TARGET_GROUP_SCOPE_KEY] = group.arn  # for the target group's metrics
        target = group.pick() if group is not None else None
        if target is None:
            await self._error(send, 503)
            return
        address = self.network.resolve(target.id, target.port)
        if address is None:
            await self._error(send, 504)  # unreachable: no route to the target
            return
        # Chunks joined once: appending to bytes copies the whole body each time, which is
        # quadratic in its size and would stall every listener on this event loop.
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        forwarded = [
            (k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        client = (scope.get("client") or (LOOPBACK, 0))[0]
        prior = headers.get("x-forwarded-for")
        forwarded = [
            (k, v)
            for k, v in forwarded
            if k.lower() not in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-port")
        ]
        forwarded += [
            (b"x-forwarded-for", (f"{prior}, {client}" if prior else client).encode()),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-port", str(listener.port).encode()),
        ]
        if "x-amzn-trace-id" not in headers:
            trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"
            forwarded.append((b"x-amzn-trace-id", trace.encode()))
        query = scope.get("query_string", b"")
        path = scope.get("raw_path") or scope["path"].encode()
        url = f"http://{address[0]}:{address[1]}{path.decode('latin-1')}"
        if query and "?" not in url:
            url += "?" + query.decode("latin-1")
        assert self.http is not None
        target.in_flight += 1
        try:
            request = self.http.build_request(scope["method"], url, headers=forwarded, content=body)
            try:
                response = await self.http.send(request, stream=True)
            except httpx.TimeoutException:
                await self._error(send, 504)
                return
            except httpx.HTTPError:
                await self._error(send, 502)
                return
            try:
                out = [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in response.headers.multi_items()
                    if k.lower() not in HOP_BY_HOP
                ]
                started = False
                try:
                    async for chunk in response.aiter_raw():
                        if not started:
                            await send(
                                {
                                    "type": "http.response.start",
                                    "status": response.status_code,
                                    "headers": out,
                                }
                            )
                            started = True
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except httpx.HTTPError:
                    if not started:
                        await self._error(send, 502)
                        return
                    raise
                if not started:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": response.status_code,
                            "headers": out,
                        }
                    )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await response.aclose()
        finally:
            target.in_flight -= 1

    @staticmethod
    async def _reply(send: Any, status: int, body: bytes, content_type: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"server", b"awselb/2.0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _error(self, send: Any, status: int) -> None:
        await self._reply(send, status, error_page(status), "text/html")

    async def _redirect(
        self, listener: Listener, scope: dict, headers: dict[str, str], config: dict, send: Any
    ) -> None:
        host = headers.get("host", f"{LOOPBACK}:{listener.local_port}").split(":")[0]
        values = {
            "protocol": "http",
            "host": host,
            "port": str(listener.port),
            "path": scope["path"].lstrip("/"),
            "query": scope.get("query_string", b"").decode("latin-1"),
        }

        def fill(template: str) -> str:
            for name, value in values.items():
                template = template.replace("#{" + name + "}", value)
            return template

        protocol = fill(config.get("Protocol", "#{protocol}")).lower()
        host = fill(config.get("Host", "#{host}"))
        location = f"{protocol}://{host}:{fill(config.get('Port', '#{port}'))}"
        location += "/" + fill(config.get("Path", "/#{path}")).lstrip("/")
        query = fill(config.get("Query", "#{query}"))
        if query:
            location += "?" + query
        status = 301 if config.get("StatusCode") == "HTTP_301" else 302
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"location", location.encode()),
                    (b"content-length", b"0"),
                    (b"server", b"awselb/2.0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
