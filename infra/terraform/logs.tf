# Log groups (/ecs/{platform}/{project}-{env}) and the model pointer parameters
# (/{platform}/{project}/{env}/model).

resource "aws_cloudwatch_log_group" "serving" {
  # checkov:skip=CKV_AWS_158: a customer managed key is optional via var.log_kms_key_arn; logs are encrypted at rest by default
  # checkov:skip=CKV_AWS_338: retention is var.log_retention_days; a year of request logs is a cost the user chooses
  for_each          = local.envs
  name              = local.env_names[each.key].log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.env_tags[each.key]
}

resource "aws_cloudwatch_log_group" "drift" {
  # checkov:skip=CKV_AWS_158: a customer managed key is optional via var.log_kms_key_arn; logs are encrypted at rest by default
  # checkov:skip=CKV_AWS_338: retention is var.log_retention_days; a year of job logs is a cost the user chooses
  name              = local.drift_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}

# The controller (and `mlopsctl promote`) own the value: Terraform only creates the
# parameter, holding "{}" until the first promotion, and never writes it again.
resource "aws_ssm_parameter" "model_pointer" {
  # checkov:skip=CKV2_AWS_34: the pointer names a public model version, not a secret; SecureString would force kms:Decrypt on every reader
  for_each    = local.envs
  name        = local.env_names[each.key].pointer_param
  description = "Live model of ${var.project} in ${each.key} (managed by the mlops controller)"
  type        = "String"
  tier        = "Standard"
  value       = jsonencode({})
  tags        = local.env_tags[each.key]

  lifecycle {
    ignore_changes = [value]
  }
}
