# The model-signing key: an asymmetric KMS key whose private half never leaves KMS.
# Publishing signs each version's manifest digest with it (mlops_core/signing.py); serving,
# the drift job, the controller, promote and rollback verify with its public key. Only
# var.publisher_principal_arns may sign, so write access to the bucket cannot forge a
# version.

resource "aws_kms_key" "model_signing" {
  # checkov:skip=CKV_AWS_7: asymmetric KMS keys cannot rotate automatically; a new key means re-signing the versions still in use
  description              = "Signs the published model versions of platform ${var.platform}"
  customer_master_key_spec = "ECC_NIST_P256"
  key_usage                = "SIGN_VERIFY"
  enable_key_rotation      = false
  deletion_window_in_days  = 30
  policy                   = data.aws_iam_policy_document.model_signing_key.json
  tags                     = local.tags
}

resource "aws_kms_alias" "model_signing" {
  name          = local.model_signing_key_alias
  target_key_id = aws_kms_key.model_signing.key_id
}

locals {
  account_root_arn = "arn:${local.partition}:iam::${local.account_id}:root"
  # Who may read the public key: every consumer that verifies, and the publishers, which
  # verify a signature a candidate already carries.
  signature_verifier_arns = concat(
    [aws_iam_role.controller.arn, aws_iam_role.serving_task.arn, aws_iam_role.drift_task.arn],
    var.publisher_principal_arns,
  )
}

# In a key policy, Resource "*" means this key. Both signing keys are administered alike.
data "aws_iam_policy_document" "signing_key_administration" {
  # checkov:skip=CKV_AWS_109: a key policy's Resource "*" is the key itself; the account must be able to manage it or KMS refuses the policy
  # checkov:skip=CKV_AWS_111: a key policy's Resource "*" is the key itself; the account must be able to manage it or KMS refuses the policy
  # checkov:skip=CKV_AWS_356: a key policy's Resource "*" is the key itself, not every resource
  statement {
    # The account administers the key (IAM policies decide who, KMS's lockout check needs
    # it) but is not given kms:Sign; the Deny below holds even if an IAM policy grants it.
    sid = "AdministerKey"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:EnableKey",
      "kms:GetKeyPolicy",
      "kms:GetPublicKey",
      "kms:ListAliases",
      "kms:ListGrants",
      "kms:ListKeyPolicies",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:RevokeGrant",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root_arn]
    }
  }
}

data "aws_iam_policy_document" "model_signing_key" {
  # checkov:skip=CKV_AWS_109: a key policy's Resource "*" is the key itself
  # checkov:skip=CKV_AWS_111: a key policy's Resource "*" is the key itself
  # checkov:skip=CKV_AWS_356: a key policy's Resource "*" is the key itself, not every resource
  source_policy_documents = [data.aws_iam_policy_document.signing_key_administration.json]

  dynamic "statement" {
    for_each = length(var.publisher_principal_arns) > 0 ? [var.publisher_principal_arns] : []
    content {
      sid       = "PublishersSign"
      actions   = ["kms:Sign"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }

  statement {
    sid       = "VerifiersReadThePublicKey"
    actions   = ["kms:DescribeKey", "kms:GetPublicKey", "kms:Verify"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = local.signature_verifier_arns
    }
  }

  statement {
    # An explicit Deny wins over any Allow, an administrator's IAM policy included: with
    # no publishers, nobody signs.
    sid       = "DenySigningToAllButPublishers"
    effect    = "Deny"
    actions   = ["kms:Sign"]
    resources = ["*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    dynamic "condition" {
      for_each = length(var.publisher_principal_arns) > 0 ? [var.publisher_principal_arns] : []
      content {
        test     = "ArnNotEquals"
        variable = "aws:PrincipalArn"
        values   = condition.value
      }
    }
  }
}

# The promotion-signing key seals every promotion-log entry (mlops_core/promotion_log.py):
# the controller (MovePointer) and var.promoter_principal_arns (promote, rollback) sign;
# the publishers cannot, so publishing a version does not let anyone rewrite what was
# promoted, and a bucket writer cannot forge an entry that a rollback would follow.

resource "aws_kms_key" "promotion_signing" {
  # checkov:skip=CKV_AWS_7: asymmetric KMS keys cannot rotate automatically; a new key means re-sealing the promotion log
  description              = "Seals the promotion log entries of platform ${var.platform}"
  customer_master_key_spec = "ECC_NIST_P256"
  key_usage                = "SIGN_VERIFY"
  enable_key_rotation      = false
  deletion_window_in_days  = 30
  policy                   = data.aws_iam_policy_document.promotion_signing_key.json
  tags                     = local.tags
}

resource "aws_kms_alias" "promotion_signing" {
  name          = local.promotion_signing_key_alias
  target_key_id = aws_kms_key.promotion_signing.key_id
}

locals {
  promotion_signer_arns = concat([aws_iam_role.controller.arn], var.promoter_principal_arns)
  # Who reads the log: its writers, and the publishers (status and history).
  promotion_verifier_arns = distinct(concat(local.promotion_signer_arns, var.publisher_principal_arns))
}

data "aws_iam_policy_document" "promotion_signing_key" {
  # checkov:skip=CKV_AWS_109: a key policy's Resource "*" is the key itself
  # checkov:skip=CKV_AWS_111: a key policy's Resource "*" is the key itself
  # checkov:skip=CKV_AWS_356: a key policy's Resource "*" is the key itself, not every resource
  source_policy_documents = [data.aws_iam_policy_document.signing_key_administration.json]

  statement {
    sid       = "PromotersSign"
    actions   = ["kms:Sign"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = local.promotion_signer_arns
    }
  }

  statement {
    sid       = "PromotionLogReadersReadThePublicKey"
    actions   = ["kms:DescribeKey", "kms:GetPublicKey", "kms:Verify"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = local.promotion_verifier_arns
    }
  }

  statement {
    # The controller is always a signer, so the condition always names someone.
    sid       = "DenySigningToAllButPromoters"
    effect    = "Deny"
    actions   = ["kms:Sign"]
    resources = ["*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = local.promotion_signer_arns
    }
  }
}
