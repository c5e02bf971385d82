# Roles: task execution (pull images, write logs), serving task, drift job, EventBridge
# Scheduler (runs the drift job) and the controller. Every Allow names its actions and, where the
# action supports it, the resources by ARN.

locals {
  ecr_repository_arns = [for repo in aws_ecr_repository.this : repo.arn]
  log_group_arns = concat(
    [for group in aws_cloudwatch_log_group.serving : group.arn],
    [aws_cloudwatch_log_group.drift.arn, aws_cloudwatch_log_group.training.arn],
  )
  # The objects the controller writes: versions it publishes (signed candidates), desired
  # state and status (and the S3 source's lease) under deployments/, the promotion log,
  # the envs' ownership claims.
  controller_written_objects = [
    "${aws_s3_bucket.artifacts.arn}/*/models/*",
    "${aws_s3_bucket.artifacts.arn}/${local.desired_state_prefix}*",
    "${aws_s3_bucket.artifacts.arn}/*/promotions/*",
    "${aws_s3_bucket.artifacts.arn}/*/claims/*",
  ]
}

# Verifiers read the public key; no role of this module may kms:Sign (the key policy
# denies it to all but var.publisher_principal_arns).
data "aws_iam_policy_document" "verify_signatures" {
  statement {
    sid       = "VerifyModelSignatures"
    actions   = ["kms:DescribeKey", "kms:GetPublicKey"]
    resources = [aws_kms_key.model_signing.arn]
  }
}

# -- trust ------------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "events_trust" {
  statement {
    actions = ["sts:AssumeRole"]
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

locals {
  oidc_issuer = var.controller_oidc_provider_arn == null ? null : element(split(":oidc-provider/", var.controller_oidc_provider_arn), 1)
}

# IRSA when an OIDC provider is given (the controller runs in Kubernetes), else ECS tasks.
data "aws_iam_policy_document" "controller_trust" {
  dynamic "statement" {
    for_each = var.controller_oidc_provider_arn == null ? [] : [var.controller_oidc_provider_arn]
    content {
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.controller_service_account.namespace}:${var.controller_service_account.name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.controller_oidc_provider_arn == null ? ["ecs-tasks.amazonaws.com"] : []
    content {
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = [statement.value]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

# -- task execution ---------------------------------------------------------------------

# ECS moves the production listener rule's weights with this role during Canary, Linear
# and BlueGreen deployments (loadBalancers[].advancedConfiguration.roleArn).
data "aws_iam_policy_document" "ecs_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "ecs_infrastructure" {
  name                 = local.ecs_infrastructure_role_name
  description          = "ECS shifts ${var.platform} serving traffic between target groups"
  assume_role_policy   = data.aws_iam_policy_document.ecs_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_role_policy_attachment" "ecs_infrastructure" {
  role       = aws_iam_role.ecs_infrastructure.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"
}

resource "aws_iam_role" "task_execution" {
  name                 = local.task_execution_role_name
  description          = "ECS pulls ${var.platform} images and writes task logs"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "task_execution" {
  statement {
    # checkov:skip=CKV_AWS_107: ECS needs a registry token to pull; ecr:GetAuthorizationToken has no resource-level permissions
    sid       = "RegistryToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullPlatformImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = local.ecr_repository_arns
  }
  statement {
    sid       = "WriteTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for arn in local.log_group_arns : "${arn}:log-stream:*"]
  }
  statement {
    # The controller's revisions set awslogs-create-group; the groups exist, but the
    # driver still calls CreateLogGroup, which needs the permission.
    sid       = "EnsureTaskLogGroups"
    actions   = ["logs:CreateLogGroup"]
    resources = concat(local.log_group_arns, [for arn in local.log_group_arns : "${arn}:*"])
  }
}

resource "aws_iam_role_policy" "task_execution" {
  name   = "pull-images-write-logs"
  role   = aws_iam_role.task_execution.id
  policy = data.aws_iam_policy_document.task_execution.json
}

# -- serving task -----------------------------------------------------------------------

resource "aws_iam_role" "serving_task" {
  name                 = local.serving_task_role_name
  description          = "Serving tasks of ${var.project}: read its models and pointers, write captured inferences"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "serving_task" {
  source_policy_documents = [data.aws_iam_policy_document.verify_signatures.json]

  statement {
    # Readers list a version's object versions (ListObjectVersions) and get each by the
    # VersionId recorded at publish.
    sid       = "ReadModels"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.models_prefix}*"]
  }
  statement {
    sid       = "WriteCapture"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.capture_root}*"]
  }
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.models_prefix, "${local.models_prefix}*"]
    }
  }
  statement {
    sid       = "ReadPointers"
    actions   = ["ssm:GetParameter"]
    resources = local.pointer_param_arns
  }
}

resource "aws_iam_role_policy" "serving_task" {
  name   = "read-models-and-pointers"
  role   = aws_iam_role.serving_task.id
  policy = data.aws_iam_policy_document.serving_task.json
}

# -- drift job --------------------------------------------------------------------------

resource "aws_iam_role" "drift_task" {
  name                 = local.drift_task_role_name
  description          = "Drift job of ${var.project}: read models, pointers and captured inferences, write drift reports and metrics"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "drift_task" {
  source_policy_documents = [data.aws_iam_policy_document.verify_signatures.json]

  statement {
    # Readers list a version's object versions (ListObjectVersions) and get each by the
    # VersionId recorded at publish.
    sid       = "ReadModels"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.models_prefix}*"]
  }
  statement {
    sid       = "ReadCapture"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.capture_root}*"]
  }
  statement {
    sid       = "ReadWriteDriftReports"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.drift_prefix}*"]
  }
  statement {
    sid       = "ListModelsCaptureAndReports"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        local.models_prefix, "${local.models_prefix}*",
        local.capture_root, "${local.capture_root}*",
        local.drift_prefix, "${local.drift_prefix}*",
      ]
    }
  }
  statement {
    # PutMetricData has no resource-level permissions; the namespace condition scopes it.
    sid       = "PutDriftMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.drift_metrics_namespace]
    }
  }
  statement {
    sid       = "ReadPointers"
    actions   = ["ssm:GetParameter", "ssm:GetParameterHistory"]
    resources = local.pointer_param_arns
  }
  statement {
    # The env's live serving revision carries the deployment's drift rules
    # (spec.monitoring.drift, as MLOPS_DRIFT_*): the job reads them from there.
    sid     = "ReadServingService"
    actions = ["ecs:DescribeServices"]
    resources = [
      for env in var.envs :
      "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service/${aws_ecs_cluster.this.name}/${local.env_names[env].service}"
    ]
  }
  statement {
    # DescribeTaskDefinition has no resource-level permissions.
    sid       = "ReadServingRevision"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "drift_task" {
  name   = "read-models-write-drift"
  role   = aws_iam_role.drift_task.id
  policy = data.aws_iam_policy_document.drift_task.json
}

# -- EventBridge Scheduler: runs the drift task on schedule ----------------------------

resource "aws_iam_role" "events" {
  name                 = local.events_role_name
  description          = "EventBridge Scheduler runs the drift job of ${var.project}"
  assume_role_policy   = data.aws_iam_policy_document.events_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "events" {
  statement {
    sid       = "RunDriftTask"
    actions   = ["ecs:RunTask"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.drift_task_family}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "PassDriftRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task_execution.arn, aws_iam_role.drift_task.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = ["arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.drift_dlq_name}"]
  }
}

resource "aws_iam_role_policy" "events" {
  name   = "run-drift-task"
  role   = aws_iam_role.events.id
  policy = data.aws_iam_policy_document.events.json
}

# -- controller -------------------------------------------------------------------------

resource "aws_iam_role" "controller" {
  name                 = local.controller_role_name
  description          = "The mlops controller: task definitions, services, pointers and the artifact bucket of ${var.project}"
  assume_role_policy   = data.aws_iam_policy_document.controller_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "controller" {
  source_policy_documents = [data.aws_iam_policy_document.verify_signatures.json]

  statement {
    # checkov:skip=CKV_AWS_111: the task definition actions have no resource-level permissions in IAM
    # checkov:skip=CKV_AWS_356: the task definition actions have no resource-level permissions in IAM
    # These four actions have no resource-level permissions in IAM, so Resource is "*":
    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html
    sid = "TaskDefinitions"
    actions = [
      "ecs:DeregisterTaskDefinition",
      "ecs:DescribeTaskDefinition",
      "ecs:ListTaskDefinitions",
      "ecs:RegisterTaskDefinition",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "Services"
    actions   = ["ecs:CreateService", "ecs:DescribeServices", "ecs:UpdateService"]
    resources = local.service_arns
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }
  statement {
    sid       = "TagServicesAndTaskDefinitions"
    actions   = ["ecs:TagResource"]
    resources = concat(local.service_arns, local.serving_task_definition_arns)
  }
  statement {
    sid       = "PassTrafficShiftingRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.ecs_infrastructure.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs.amazonaws.com"]
    }
  }
  statement {
    sid       = "PassServingRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task_execution.arn, aws_iam_role.serving_task.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    sid = "Pointers"
    actions = [
      "ssm:GetParameter",
      "ssm:GetParameterHistory",
      "ssm:LabelParameterVersion",
      "ssm:PutParameter",
    ]
    resources = local.pointer_param_arns
  }
  statement {
    sid       = "ReadArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }
  statement {
    sid       = "ReadPublishedVersions"
    actions   = ["s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.models_prefix}*"]
  }
  statement {
    # PutObjectTagging: publishing tags every artifact object with the cost tags. No
    # overwrite of a published object: the bucket policy admits only conditional creates.
    sid       = "WriteArtifacts"
    actions   = ["s3:PutObject", "s3:PutObjectTagging"]
    resources = local.controller_written_objects
  }
  statement {
    # Publishing puts each object under governance retention (object_lock.days).
    sid       = "LockPublishedVersions"
    actions   = ["s3:PutObjectRetention"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*/models/*"]
  }
  statement {
    # Listing finds the log's head when the pointer parameter cannot say where it is.
    sid       = "ListPromotionLog"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.promotions_root}*"]
    }
  }
  statement {
    # The S3 source removes a deployment's status object when its manifest is deleted.
    sid       = "DesiredStateCleanup"
    actions   = ["s3:DeleteObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.desired_state_prefix}*"]
  }
  statement {
    # A Retain or ScaleToZero delete releases the deployment's claim on its env (the
    # controller deletes it only with If-Match on the ETag of the claim it owns).
    sid       = "ReleaseClaims"
    actions   = ["s3:DeleteObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*/claims/*"]
  }
  statement {
    sid       = "ArtifactBucket"
    actions   = ["s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
  }
  statement {
    sid       = "ListPublishedVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.models_prefix, "${local.models_prefix}*"]
    }
  }
  statement {
    # Progressive rollouts: the controller reads where ECS's service deployment is,
    # answers its PAUSE hooks (approval, analysis) and stops one a newer spec supersedes.
    sid     = "ProgressiveRollouts"
    actions = ["ecs:ContinueServiceDeployment", "ecs:DescribeServiceDeployments", "ecs:DescribeServiceRevisions", "ecs:ListServiceDeployments", "ecs:StopServiceDeployment"]
    resources = concat(
      local.service_arns,
      [for env in var.envs : "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service-deployment/${local.ecs_cluster_name}/${local.env_names[env].service}/*"],
      [for env in var.envs : "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service-revision/${local.ecs_cluster_name}/${local.env_names[env].service}/*"],
    )
  }
  statement {
    # checkov:skip=CKV_AWS_111: ELB Describe* and GetMetricData have no resource-level permissions
    # checkov:skip=CKV_AWS_356: ELB Describe* and GetMetricData have no resource-level permissions
    # Finding the envs' target groups and the production rule's weights, and the
    # per-target-group metrics a rollout step is judged on.
    sid = "ReadTrafficAndMetrics"
    actions = [
      "cloudwatch:GetMetricData",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeTargetGroups",
    ]
    resources = ["*"]
  }
  statement {
    # The alarm on the new revision's target group that rolls a rollout back by ECS
    # itself, when the controller is down (one per env, re-pointed per rollout).
    sid       = "RolloutAlarms"
    actions   = ["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"]
    resources = [for env in var.envs : "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${local.env_names[env].service}-canary-errors"]
  }
  statement {
    # The budget gate prices a spec from the Price List API (else a shipped table);
    # pricing:GetProducts has no resource-level permissions.
    sid       = "Prices"
    actions   = ["pricing:GetProducts"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "controller" {
  name   = "reconcile-model-deployments"
  role   = aws_iam_role.controller.id
  policy = data.aws_iam_policy_document.controller.json
}
