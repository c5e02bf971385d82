# The artifact bucket: model versions under {project}/models/, desired state under
# deployments/. Versions are written once and never overwritten: the bucket policy refuses
# unconditional writes, version deletes and retention bypass under */models/*, and
# publishing puts each object there under governance-mode Object Lock retention of its own
# (var.object_lock.days). No bucket default retention: it would lock captures, drift
# reports and desired state too, which must stay deletable.

resource "aws_s3_bucket" "artifacts" {
  # checkov:skip=CKV_AWS_144: cross-region replication is a per-account DR decision, not part of the base
  # checkov:skip=CKV2_AWS_62: nothing consumes bucket events; the controller polls deployments/
  bucket              = local.artifact_bucket
  object_lock_enabled = var.object_lock.enabled
  tags                = local.tags
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      # The AWS managed key (aws/s3): no key policy to maintain for the platform's roles.
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

locals {
  # Every project's published versions: {project}/models/{version}/...
  published_model_objects = "${aws_s3_bucket.artifacts.arn}/*/models/*"
  append_only_records = [
    "${aws_s3_bucket.artifacts.arn}/*/registration/*",
    "${aws_s3_bucket.artifacts.arn}/*/promotions/*",
    "${aws_s3_bucket.artifacts.arn}/*/claims/*",
    "${aws_s3_bucket.artifacts.arn}/*/approvals/*",
  ]
}

data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.artifacts.arn,
      "${aws_s3_bucket.artifacts.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    # A published object is created once (PutObject with If-None-Match: *); a write
    # without the header could replace it. Multipart parts and CopyObject cannot carry the
    # header, so they are refused here too: publishing uses single PutObject requests.
    sid       = "DenyModelOverwrites"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = [local.published_model_objects]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }
  }

  statement {
    # Registration revisions, promotion-log entries, ownership claims and rollout
    # approvals are append-only records: each is created once (If-None-Match), so an
    # unconditional write could only rewrite history (or take an env from its owner).
    sid       = "DenyRecordOverwrites"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = local.append_only_records
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }
  }

  statement {
    # Pins name object versions: deleting one breaks every pointer and task definition
    # that pins it. (A delete marker hides nothing from readers, who ask by VersionId.)
    sid       = "DenyModelVersionDeletes"
    effect    = "Deny"
    actions   = ["s3:DeleteObjectVersion"]
    resources = [local.published_model_objects]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }

  statement {
    # Governance retention can be shortened or removed (PutObjectRetention), and a locked
    # version deleted early, only with s3:BypassGovernanceRetention: nobody gets it. To
    # retire a leaked model, an administrator lifts this statement first (a reviewed
    # change, in CloudTrail).
    sid       = "DenyModelRetentionBypass"
    effect    = "Deny"
    actions   = ["s3:BypassGovernanceRetention"]
    resources = [local.published_model_objects]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }

  statement {
    # Retention set on a published object stays GOVERNANCE (only lengthening it is
    # possible without the bypass above); COMPLIANCE would make it undeletable even for the
    # account.
    sid       = "DenyModelRetentionModeChange"
    effect    = "Deny"
    actions   = ["s3:PutObjectRetention"]
    resources = [local.published_model_objects]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:object-lock-mode"
      values   = ["GOVERNANCE"]
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

resource "aws_s3_bucket_logging" "artifacts" {
  count         = var.access_log_bucket != null ? 1 : 0
  bucket        = aws_s3_bucket.artifacts.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${local.artifact_bucket}/"
}
