"""The local data plane: production runs on the laptop.

moto's server stores what ECS, ELBv2, CloudWatch Logs and EventBridge are asked to hold
but runs nothing. ``mlopsctl dev up`` runs moto's server in one process with what AWS
would run behind those APIs:

    server.py        the process: the endpoint (moto behind the ECS front) and the threads
    front.py         ECS operations moto lacks or gets wrong, in the real API's shapes
    moto_bridge.py   the one module that reaches into moto's state (pinned, tested)
    scheduler.py     ECS's service scheduler: targets, health, failures, circuit breaker
    strategies.py    deployment strategies: ROLLING (rolling.py), the seam for the others
    agent.py         tasks as local processes through ECS's task lifecycle; orphans
    images.py        which local program each platform image runs: the one table
    network.py       task addresses -> loopback ports (nothing leaves 127.0.0.1)
    loadbalancer.py  the local ALB: listeners, rules, weighted target groups, health checks
    cwlogs.py        task output to CloudWatch Logs (awslogs)
    schedules.py     EventBridge Scheduler schedules and rules that RunTask
    settings.py      MLOPS_DATAPLANE_* (time scale, loop intervals)

Everything but the bridge reads and writes through the endpoint with boto3, like any
client, so what the data plane sees is what the API shows.
"""
