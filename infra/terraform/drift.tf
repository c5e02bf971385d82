# The drift job: one task definition (the serving image, `python -m monitoring`), run once
# per env by EventBridge Scheduler through ECS RunTask (MLOPS_ENV set per run), with
# retries and a dead-letter queue for runs that could not be started. It exists once an
# image is known: var.drift_image, else the serving image (serving_image_tag or
# serving_image).

resource "aws_ecs_task_definition" "drift" {
  count = local.drift_enabled ? 1 : 0

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
      image                  = local.drift_image
      command                = var.drift_command
      essential              = true
      readonlyRootFilesystem = true
      environment = [
        { name = "MLOPS_PLATFORM", value = var.platform },
        { name = "MLOPS_PROJECT", value = var.project },
        { name = "MLOPS_ARTIFACT_BUCKET", value = local.artifact_bucket },
        { name = "AWS_REGION", value = local.region },
        { name = "AWS_DEFAULT_REGION", value = local.region },
        { name = "MLOPS_DRIFT_WINDOW", value = var.drift_window },
        { name = "MLOPS_SIGNING_KEY", value = aws_kms_key.model_signing.arn },
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

# Runs that EventBridge Scheduler could not start after its retries land here.
resource "aws_sqs_queue" "drift_dlq" {
  count = local.drift_enabled ? 1 : 0

  name                      = local.drift_dlq_name
  message_retention_seconds = 1209600 # 14 days: time to notice and re-run
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

data "aws_iam_policy_document" "drift_dlq" {
  count = local.drift_enabled ? 1 : 0

  statement {
    sid       = "SchedulerDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.drift_dlq[0].arn]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "drift_dlq" {
  count = local.drift_enabled ? 1 : 0

  queue_url = aws_sqs_queue.drift_dlq[0].id
  policy    = data.aws_iam_policy_document.drift_dlq[0].json
}

resource "aws_scheduler_schedule" "drift" {
  # checkov:skip=CKV_AWS_297: the schedule holds an env name and ARNs, no secret; AWS owned keys encrypt it at rest
  for_each = local.drift_envs

  name                         = "${local.env_names[each.key].service}-drift"
  description                  = "Drift check of ${var.project} in ${each.key}"
  schedule_expression          = var.drift_schedule_expression
  schedule_expression_timezone = "UTC"
  state                        = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.this.arn
    role_arn = aws_iam_role.events.arn

    # The RunTask overrides: which env this run checks.
    input = jsonencode({
      containerOverrides = [
        {
          name        = "drift"
          environment = [{ name = "MLOPS_ENV", value = each.key }]
        },
      ]
    })

    retry_policy {
      maximum_event_age_in_seconds = var.drift_retry_max_age_seconds
      maximum_retry_attempts       = var.drift_retry_attempts
    }

    dead_letter_config {
      arn = aws_sqs_queue.drift_dlq[0].arn
    }

    ecs_parameters {
      # Without a revision: always the latest active revision of the family.
      task_definition_arn = aws_ecs_task_definition.drift[0].arn_without_revision
      task_count          = 1
      launch_type         = "FARGATE"
      platform_version    = "LATEST"
      propagate_tags      = "TASK_DEFINITION"

      network_configuration {
        subnets          = local.private_subnet_ids
        security_groups  = [aws_security_group.tasks_egress.id]
        assign_public_ip = false
      }
    }
  }
}
