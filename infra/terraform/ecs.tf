# The cluster, each env's serving task definition (the first revision only) and service.
# After creation the controller registers revisions and updates the service, so Terraform
# ignores the service's task definition and desired count.

resource "aws_ecs_cluster" "this" {
  name = local.ecs_cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_ecs_task_definition" "serving" {
  for_each = local.serving_envs

  family                   = local.env_names[each.key].task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.serving_cpu
  memory                   = var.serving_memory
  execution_role_arn       = aws_iam_role.task_execution.arn
  task_role_arn            = aws_iam_role.serving_task.arn
  # A revision the service may still run is never deregistered by Terraform.
  skip_destroy = true

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root filesystem is read-only; the model cache lives on task storage at /tmp.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name                   = local.serving_container
      image                  = local.serving_image
      essential              = true
      readonlyRootFilesystem = true
      portMappings = [
        { name = "http", containerPort = local.serving_port, protocol = "tcp" },
      ]
      # No MODEL_URI: the first revision follows the env's pointer; the controller's
      # revisions pin a version with MODEL_URI.
      environment = [
        { name = "MLOPS_PLATFORM", value = var.platform },
        { name = "MLOPS_PROJECT", value = var.project },
        { name = "MLOPS_ENV", value = each.key },
        { name = "MLOPS_ARTIFACT_BUCKET", value = local.artifact_bucket },
        { name = "AWS_REGION", value = local.region },
        { name = "AWS_DEFAULT_REGION", value = local.region },
        { name = "MLOPS_SIGNING_KEY", value = aws_kms_key.model_signing.arn },
      ]
      mountPoints = [
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.serving[each.key].name
          awslogs-region        = local.region
          awslogs-stream-prefix = local.serving_container
        }
      }
    },
  ])

  tags = local.env_tags[each.key]
}

resource "aws_ecs_service" "serving" {
  for_each = local.serving_envs

  name                               = local.env_names[each.key].service
  cluster                            = aws_ecs_cluster.this.arn
  task_definition                    = aws_ecs_task_definition.serving[each.key].arn
  desired_count                      = var.serving_desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  health_check_grace_period_seconds  = var.health_check_grace_period_seconds
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_controller {
    type = "ECS"
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.private_subnet_ids
    security_groups  = [aws_security_group.serving.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this["${each.key}-blue"].arn
    container_name   = local.serving_container
    container_port   = local.serving_port
  }

  tags = local.env_tags[each.key]

  lifecycle {
    # The controller owns revisions; the controller and auto scaling own the count.
    ignore_changes = [task_definition, desired_count]
  }

  depends_on = [
    aws_lb_listener.http_forward,
    aws_lb_listener.https,
    aws_iam_role_policy.task_execution,
  ]
}

resource "aws_appautoscaling_target" "serving" {
  for_each = local.serving_envs

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.serving[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.autoscaling.min_capacity
  max_capacity       = var.autoscaling.max_capacity
  tags               = local.env_tags[each.key]
}

resource "aws_appautoscaling_policy" "serving" {
  for_each = local.serving_envs

  name               = "${local.env_names[each.key].service}-${var.autoscaling.metric}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.serving[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.serving[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.serving[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling.target_value
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = var.autoscaling.metric == "cpu" ? "ECSServiceAverageCPUUtilization" : "ALBRequestCountPerTarget"
      resource_label = (
        var.autoscaling.metric == "requests"
        ? "${aws_lb.this[each.key].arn_suffix}/${aws_lb_target_group.this["${each.key}-blue"].arn_suffix}"
        : null
      )
    }
  }
}
