# Per-env outputs are maps keyed by env name, e.g. ecs_service_name["prod"].

output "artifact_bucket" {
  description = "Artifact bucket name (MLOPS_ARTIFACT_BUCKET)."
  value       = aws_s3_bucket.artifacts.bucket
}

output "artifact_bucket_arn" {
  description = "Artifact bucket ARN."
  value       = aws_s3_bucket.artifacts.arn
}

output "model_pointer_ssm_param" {
  description = "Model pointer SSM parameter per env (/{platform}/{project}/{env}/model)."
  value       = { for env, param in aws_ssm_parameter.model_pointer : env => param.name }
}

output "ecr_repository_url" {
  description = "URL of the serving image repository ({platform}/serving)."
  value       = aws_ecr_repository.this["serving"].repository_url
}

output "ecr_training_repository_url" {
  description = "URL of the training image repository ({platform}/training)."
  value       = aws_ecr_repository.this["training"].repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster name ({platform})."
  value       = aws_ecs_cluster.this.name
}

output "ecs_cluster_arn" {
  description = "ECS cluster ARN."
  value       = aws_ecs_cluster.this.arn
}

output "ecs_service_name" {
  description = "ECS service name per env ({project}-{env}); the task definition family has the same name. The service exists once serving_image_tag (or serving_image) is set."
  value       = { for env in var.envs : env => local.env_names[env].service }
}

output "serving_enabled" {
  description = "Whether the services exist yet (serving_image_tag or serving_image is set)."
  value       = local.serving_enabled
}

output "alb_dns_name" {
  description = "DNS name of each env's load balancer."
  value       = { for env, lb in aws_lb.this : env => lb.dns_name }
}

output "alb_arn" {
  description = "ARN of each env's load balancer (e.g. to attach a WAF web ACL)."
  value       = { for env, lb in aws_lb.this : env => lb.arn }
}

output "service_url" {
  description = "Base URL of each env's endpoint."
  value       = { for env, lb in aws_lb.this : env => "${local.https ? "https" : "http"}://${lb.dns_name}" }
}

output "target_group_arns" {
  description = "Blue (serving) and green (for blue/green) target group ARNs per env."
  value = {
    for env in var.envs : env => {
      blue  = aws_lb_target_group.this["${env}-blue"].arn
      green = aws_lb_target_group.this["${env}-green"].arn
    }
  }
}

output "log_group_name" {
  description = "Serving log group per env (/ecs/{platform}/{project}-{env})."
  value       = { for env, group in aws_cloudwatch_log_group.serving : env => group.name }
}

output "drift_log_group_name" {
  description = "Log group of the drift job."
  value       = aws_cloudwatch_log_group.drift.name
}

output "controller_role_arn" {
  description = "Role of the controller (IRSA: annotate its service account with it)."
  value       = aws_iam_role.controller.arn
}

output "controller_environment" {
  description = "Environment for the controller (its Helm values or ECS task): names, region, where and as whom it runs the serving tasks it registers, the model-signing and promotion-signing keys and the retention of what it publishes."
  value = {
    MLOPS_PLATFORM           = var.platform
    MLOPS_ARTIFACT_BUCKET    = aws_s3_bucket.artifacts.bucket
    AWS_REGION               = local.region
    MLOPS_SUBNETS            = join(",", local.private_subnet_ids)
    MLOPS_SECURITY_GROUPS    = aws_security_group.serving.id
    MLOPS_ASSIGN_PUBLIC_IP   = "false"
    MLOPS_EXECUTION_ROLE_ARN = aws_iam_role.task_execution.arn
    MLOPS_TASK_ROLE_ARN      = aws_iam_role.serving_task.arn
    # ECS shifts traffic with it (spec.strategy Canary, Linear, BlueGreen).
    MLOPS_ECS_INFRASTRUCTURE_ROLE_ARN = aws_iam_role.ecs_infrastructure.arn
    # The key by ARN, not alias: an alias can be moved to another key.
    MLOPS_SIGNING_KEY = aws_kms_key.model_signing.arn
    # It seals the promotion log with this one (it may sign with it, not with the other).
    MLOPS_PROMOTION_KEY = aws_kms_key.promotion_signing.arn
    # Governance retention of what it publishes; "0" when the bucket has no Object Lock.
    MLOPS_OBJECT_LOCK_DAYS = var.object_lock.enabled ? tostring(var.object_lock.days) : "0"
    # Services attach to this module's target groups (found by name).
    MLOPS_LOAD_BALANCERS = "terraform"
  }
}

output "model_signing_key_arn" {
  description = "ARN of the model-signing KMS key (MLOPS_SIGNING_KEY): publishers sign with it, everyone else only verifies."
  value       = aws_kms_key.model_signing.arn
}

output "promotion_signing_key_arn" {
  description = "ARN of the promotion-signing KMS key (MLOPS_PROMOTION_KEY): the controller and the promoters seal promotion-log entries with it."
  value       = aws_kms_key.promotion_signing.arn
}

output "task_execution_role_arn" {
  description = "Execution role the controller puts in the task definitions it registers."
  value       = aws_iam_role.task_execution.arn
}

output "serving_task_role_arn" {
  description = "Task role the controller puts in the serving task definitions it registers."
  value       = aws_iam_role.serving_task.arn
}

output "drift_task_role_arn" {
  description = "Task role of the drift job."
  value       = aws_iam_role.drift_task.arn
}

output "training_task_role_arn" {
  description = "Task role of remote training (reads the data, writes candidates)."
  value       = aws_iam_role.training_task.arn
}

output "training_task_definition_arn" {
  description = "Training task definition (family {project}_training) for RunTask; null until training_image_tag (or training_image) is set."
  value       = local.training_enabled ? aws_ecs_task_definition.training[0].arn : null
}

output "training_log_group_name" {
  description = "Log group of remote training."
  value       = aws_cloudwatch_log_group.training.name
}

output "training_launcher_policy_arn" {
  description = "Managed policy to attach to whoever runs `mlopsctl train --remote` (run, follow and read the logs of training tasks)."
  value       = aws_iam_policy.training_launcher.arn
}

output "vpc_id" {
  description = "VPC of the services."
  value       = local.vpc_id
}

output "private_subnet_ids" {
  description = "Subnets of the tasks."
  value       = local.private_subnet_ids
}

output "serving_security_group_id" {
  description = "Security group of the serving tasks (the controller reuses it in services it creates)."
  value       = aws_security_group.serving.id
}

output "region" {
  description = "Region of the resources (AWS_REGION)."
  value       = local.region
}
