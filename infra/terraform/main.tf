data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  envs = toset(var.envs)

  # The service needs an image that exists; until one is pushed, only the base is built.
  serving_enabled = var.serving_image != null || var.serving_image_tag != null
  serving_image   = coalesce(var.serving_image, "${aws_ecr_repository.this["serving"].repository_url}:${coalesce(var.serving_image_tag, "unset")}")
  serving_envs    = local.serving_enabled ? local.envs : toset([])
  # The drift job runs on var.drift_image, else on the serving image (which carries it).
  drift_image   = var.drift_image != null ? var.drift_image : (local.serving_enabled ? local.serving_image : null)
  drift_enabled = local.drift_image != null
  drift_envs    = local.drift_enabled ? local.envs : toset([])

  serving_container = "serving"
  serving_port      = 8080

  pointer_param_arns = [
    for env in var.envs : "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.env_names[env].pointer_param}"
  ]
  service_arns = [
    for env in var.envs : "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service/${local.ecs_cluster_name}/${local.env_names[env].service}"
  ]
  serving_task_definition_arns = [
    for env in var.envs : "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.env_names[env].task_family}:*"
  ]
}
