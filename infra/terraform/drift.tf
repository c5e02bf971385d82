# The drift job: one task definition, run on a schedule once per env (MLOPS_ENV set per
# run). Created only when var.drift_image is set.

resource "aws_ecs_task_definition" "drift" {
  count = var.drift_image != null ? 1 : 0

  family                   = local.drift_task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.drift_cpu
  memory                   = var.drift_memory
  execution_role_arn       = aws_iam_role.task_execution.arn
  task_role_arn            = aws_iam_role.drift_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name                   = "drift"
      image                  = var.drift_image
      command                = var.drift_command
      essential              = true
      readonlyRootFilesystem = true
      environment = [
        { name = "MLOPS_PLATFORM", value = var.platform },
        { name = "MLOPS_PROJECT", value = var.project },
        { name = "MLOPS_ARTIFACT_BUCKET", value = local.artifact_bucket },
        { name = "AWS_REGION", value = local.region },
        { name = "AWS_DEFAULT_REGION", value = local.region },
      ]
      mountPoints = [
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.drift.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "drift"
        }
      }
    },
  ])

  tags = local.tags
}

resource "aws_cloudwatch_event_rule" "drift" {
  for_each = local.drift_envs

  name                = "${local.env_names[each.key].service}-drift"
  description         = "Drift check of ${var.project} in ${each.key}"
  schedule_expression = var.drift_schedule_expression
  state               = "ENABLED"
  tags                = local.env_tags[each.key]
}

resource "aws_cloudwatch_event_target" "drift" {
  for_each = local.drift_envs

  rule     = aws_cloudwatch_event_rule.drift[each.key].name
  arn      = aws_ecs_cluster.this.arn
  role_arn = aws_iam_role.events.arn

  ecs_target {
    # Without a revision: always the latest active revision of the family.
    task_definition_arn = aws_ecs_task_definition.drift[0].arn_without_revision
    task_count          = 1
    launch_type         = "FARGATE"
    platform_version    = "LATEST"

    network_configuration {
      subnets          = local.private_subnet_ids
      security_groups  = [aws_security_group.tasks_egress.id]
      assign_public_ip = false
    }
  }

  input = jsonencode({
    containerOverrides = [
      {
        name        = "drift"
        environment = [{ name = "MLOPS_ENV", value = each.key }]
      },
    ]
  })
}
