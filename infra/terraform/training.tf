# Remote training (`mlopsctl train --remote`): one task definition of the training image,
# run once per training with RunTask. The task role reads the training data and the
# project's config and writes candidate artifacts folders under {project}/candidates/,
# nothing else: publishing a candidate is the controller's (a ModelDeployment names it in
# model.candidate) or `mlopsctl publish`'s, after its gates. The task definition exists
# once training_image_tag (or training_image) is set; the role, log group and launcher
# policy exist from the first apply.

locals {
  training_enabled   = var.training_image != null || var.training_image_tag != null
  training_image     = coalesce(var.training_image, "${aws_ecr_repository.this["training"].repository_url}:${coalesce(var.training_image_tag, "unset")}")
  training_container = "training"
  training_task_definition_arns = [
    "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.training_task_family}:*",
  ]
}

resource "aws_cloudwatch_log_group" "training" {
  # checkov:skip=CKV_AWS_158: a customer managed key is optional via var.log_kms_key_arn; logs are encrypted at rest by default
  # checkov:skip=CKV_AWS_338: retention is var.log_retention_days; a year of training logs is a cost the user chooses
  name              = local.training_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}

resource "aws_ecs_task_definition" "training" {
  count = local.training_enabled ? 1 : 0

  family                   = local.training_task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.training_cpu
  memory                   = var.training_memory
  execution_role_arn       = aws_iam_role.task_execution.arn
  task_role_arn            = aws_iam_role.training_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root filesystem is read-only: the project is staged in /work, scratch is /tmp.
  volume {
    name = "work"
  }
  volume {
    name = "tmp"
  }

  ephemeral_storage {
    size_in_gib = var.training_ephemeral_storage_gib
  }

  container_definitions = jsonencode([
    {
      name                   = local.training_container
      image                  = local.training_image
      essential              = true
      readonlyRootFilesystem = true
      # The data URI, the candidate URI and the command come with each RunTask.
      environment = [
        { name = "MLOPS_PLATFORM", value = var.platform },
        { name = "MLOPS_PROJECT", value = var.project },
        { name = "MLOPS_ARTIFACT_BUCKET", value = local.artifact_bucket },
        { name = "AWS_REGION", value = local.region },
        { name = "AWS_DEFAULT_REGION", value = local.region },
      ]
      mountPoints = [
        { sourceVolume = "work", containerPath = "/work", readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.training.name
          awslogs-region        = local.region
          awslogs-stream-prefix = local.training_container
        }
      }
    },
  ])

  tags = local.tags
}

# -- the training task's role -----------------------------------------------------------

resource "aws_iam_role" "training_task" {
  name                 = local.training_task_role_name
  description          = "Remote training of ${var.project}: read the data, write candidates"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "training_task" {
  statement {
    sid       = "ReadTrainingData"
    actions   = ["s3:GetObject"]
    resources = concat(["${aws_s3_bucket.artifacts.arn}/${local.training_data_prefix}*"], var.training_data_object_arns)
  }
  statement {
    # The registration's revisions, and the legacy unversioned one until a revision exists.
    sid       = "ReadProjectRegistration"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.registration_prefix}*", "${aws_s3_bucket.artifacts.arn}/${local.legacy_registration_key}"]
  }
  statement {
    # Read back what it wrote, to check each file's sha256.
    sid       = "WriteCandidates"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.candidates_prefix}*"]
  }
  statement {
    sid       = "ListDataCandidatesAndRegistration"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.training_data_prefix, "${local.training_data_prefix}*", local.candidates_prefix, "${local.candidates_prefix}*", local.registration_prefix, "${local.registration_prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "training_task" {
  name   = "read-data-write-candidates"
  role   = aws_iam_role.training_task.id
  policy = data.aws_iam_policy_document.training_task.json
}

# -- who may start it: attach to the people or CI roles that run `train --remote` -------

data "aws_iam_policy_document" "training_launcher" {
  statement {
    sid       = "RunTraining"
    actions   = ["ecs:RunTask"]
    resources = local.training_task_definition_arns
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "FollowTraining"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.ecs_cluster_name}/*"]
  }
  statement {
    sid       = "PassTrainingRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task_execution.arn, aws_iam_role.training_task.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    sid       = "ReadTrainingLogs"
    actions   = ["logs:FilterLogEvents", "logs:GetLogEvents"]
    resources = [aws_cloudwatch_log_group.training.arn, "${aws_cloudwatch_log_group.training.arn}:*"]
  }
  statement {
    # Stage the data where the training role reads it.
    sid       = "UploadTrainingData"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.training_data_prefix}*"]
  }
}

resource "aws_iam_policy" "training_launcher" {
  name        = "${local.training_task_role_name}-launcher"
  description = "Run and follow remote training of ${var.project} (mlopsctl train --remote)"
  policy      = data.aws_iam_policy_document.training_launcher.json
  tags        = local.tags
}
