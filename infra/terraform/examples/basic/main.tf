# The platform's AWS base for one project with a staging and a prod env.
#
#   terraform init && terraform apply                          # the base
#   terraform apply -var serving_image_tag=0.1.0               # + the services
#
# See ../../README.md for the whole walk to a live /health.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

variable "region" {
  description = "AWS region of the platform."
  type        = string
  default     = "us-east-1"
}

variable "project" {
  description = "Project to serve."
  type        = string
  default     = "usedcar-price"
}

variable "serving_image_tag" {
  description = "Serving image tag pushed to the serving repository; null until one is pushed."
  type        = string
  default     = null
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS; null serves HTTP."
  type        = string
  default     = null
}

variable "alb_deletion_protection" {
  description = "Deletion protection on the load balancers (false lets `terraform destroy` remove them)."
  type        = bool
  default     = true
}

variable "publisher_principal_arns" {
  description = "IAM roles or users that run `mlopsctl publish` / `mlopsctl sign` (the only identities that may sign model versions)."
  type        = list(string)
  default     = []
}

provider "aws" {
  region = var.region

  # The platform-wide cost allocation tags (mlops_core.naming.COST_TAG_KEYS) on everything
  # this provider creates; the module adds them, and the per-env ones, itself as well.
  default_tags {
    tags = {
      "mlops:platform" = "mlops"
      "mlops:project"  = var.project
    }
  }
}

module "mlops" {
  source = "../.."

  platform                 = "mlops"
  project                  = var.project
  envs                     = ["staging", "prod"]
  serving_image_tag        = var.serving_image_tag
  certificate_arn          = var.certificate_arn
  alb_deletion_protection  = var.alb_deletion_protection
  publisher_principal_arns = var.publisher_principal_arns

  autoscaling = {
    min_capacity = 1
    max_capacity = 4
    metric       = "cpu"
    target_value = 60
  }

  tags = { owner = "ml-platform" }
}

output "artifact_bucket" {
  description = "Artifact bucket name (MLOPS_ARTIFACT_BUCKET)."
  value       = module.mlops.artifact_bucket
}

output "model_pointer_ssm_param" {
  description = "Model pointer parameter per env."
  value       = module.mlops.model_pointer_ssm_param
}

output "ecr_repository_url" {
  description = "Serving image repository URL."
  value       = module.mlops.ecr_repository_url
}

output "ecr_training_repository_url" {
  description = "Training image repository URL."
  value       = module.mlops.ecr_training_repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = module.mlops.ecs_cluster_name
}

output "ecs_service_name" {
  description = "ECS service name per env."
  value       = module.mlops.ecs_service_name
}

output "alb_dns_name" {
  description = "Load balancer DNS name per env."
  value       = module.mlops.alb_dns_name
}

output "service_url" {
  description = "Endpoint base URL per env."
  value       = module.mlops.service_url
}

output "controller_role_arn" {
  description = "Controller role ARN."
  value       = module.mlops.controller_role_arn
}

output "log_group_name" {
  description = "Serving log group per env."
  value       = module.mlops.log_group_name
}

output "region" {
  description = "AWS region."
  value       = module.mlops.region
}

output "task_execution_role_arn" {
  description = "Execution role for the controller's task definitions."
  value       = module.mlops.task_execution_role_arn
}

output "serving_task_role_arn" {
  description = "Serving task role for the controller's task definitions."
  value       = module.mlops.serving_task_role_arn
}

output "controller_environment" {
  description = "Environment variables for the controller."
  value       = module.mlops.controller_environment
}

output "promotion_signing_key_arn" {
  description = "Promotion-signing KMS key ARN (MLOPS_PROMOTION_KEY)."
  value       = module.mlops.promotion_signing_key_arn
}

output "model_signing_key_arn" {
  description = "Model-signing KMS key ARN (MLOPS_SIGNING_KEY)."
  value       = module.mlops.model_signing_key_arn
}
