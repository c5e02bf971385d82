# -- names (mlops_core/naming.py builds the same names from the same inputs) ------------

variable "platform" {
  description = "Platform name: prefix of every resource name and of the SSM namespace (MLOPS_PLATFORM on the Python side)."
  type        = string
  default     = "mlops"

  validation {
    # naming.PLATFORM_RE
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.platform))
    error_message = "platform must be 3-22 lowercase letters, digits and '-', starting with a letter and not ending with '-'."
  }
}

variable "project" {
  description = "Project served by this base (the `name` in the project's project.yaml)."
  type        = string

  validation {
    # naming.PROJECT_RE
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.project))
    error_message = "project must be 2-32 lowercase letters, digits and '-', starting with a letter (e.g. usedcar-price)."
  }
}

variable "envs" {
  description = "Environments of the project; each gets a pointer parameter, a load balancer, a service and a log group."
  type        = list(string)
  default     = ["staging", "prod"]

  validation {
    # naming.ENV_RE
    condition     = length(var.envs) > 0 && alltrue([for env in var.envs : can(regex("^[a-z][a-z0-9]{0,9}$", env))])
    error_message = "envs must be a non-empty list of 1-10 lowercase letters and digits, each starting with a letter (e.g. [\"staging\", \"prod\"])."
  }

  validation {
    condition     = length(distinct(var.envs)) == length(var.envs)
    error_message = "envs must not repeat a name."
  }
}

variable "artifact_bucket_name" {
  description = "Artifact bucket name; null means \"{platform}-artifacts\". Set it as MLOPS_ARTIFACT_BUCKET on the Python side too."
  type        = string
  default     = null

  validation {
    condition     = var.artifact_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket_name))
    error_message = "artifact_bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'."
  }
}

variable "tags" {
  description = "Tags added to every resource this module creates."
  type        = map(string)
  default     = {}
}

# -- artifact bucket --------------------------------------------------------------------

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions in the artifact bucket are deleted."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "object_lock" {
  description = "S3 Object Lock on the artifact bucket. The bucket sets no default retention (captures and desired state stay deletable): publishing gives each object under {project}/models/ GOVERNANCE-mode retention for `days` (MLOPS_OBJECT_LOCK_DAYS; governance, so a leaked model can still be retired once the bucket policy's deny is lifted). Decide before the first apply: changing `enabled` replaces the bucket, which fails once it holds versions; a base created with it off sets enabled = false."
  type = object({
    enabled = bool
    days    = optional(number, 30)
  })
  default = { enabled = true }

  validation {
    condition     = var.object_lock.days >= 1 && floor(var.object_lock.days) == var.object_lock.days
    error_message = "object_lock.days must be a whole number of days, at least 1."
  }
}

variable "access_log_bucket" {
  description = "Existing bucket that receives the artifact bucket's server access logs; null turns access logging off."
  type        = string
  default     = null
}

# -- container registry -----------------------------------------------------------------

variable "ecr_keep_images" {
  description = "Images kept per ECR repository; older ones are expired by the lifecycle policy."
  type        = number
  default     = 100

  validation {
    condition     = var.ecr_keep_images >= 1
    error_message = "ecr_keep_images must be at least 1."
  }
}

# -- network ----------------------------------------------------------------------------

variable "create_vpc" {
  description = "Create a VPC with two public and two private subnets and a NAT gateway; false means bring your own via vpc_id and the subnet ids."
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR block of the created VPC (create_vpc = true)."
  type        = string
  default     = "10.60.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block such as 10.60.0.0/16."
  }
}

variable "availability_zones" {
  description = "The two availability zones of the created VPC; empty means the region's first two."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 2
    error_message = "availability_zones must be empty or name exactly two zones (e.g. [\"us-east-1a\", \"us-east-1b\"])."
  }
}

variable "vpc_id" {
  description = "Existing VPC (create_vpc = false)."
  type        = string
  default     = null
}

variable "public_subnet_ids" {
  description = "Existing public subnets for the load balancers, in at least two availability zones (create_vpc = false)."
  type        = list(string)
  default     = []
}

variable "private_subnet_ids" {
  description = "Existing private subnets with a route to the internet or VPC endpoints for the tasks (create_vpc = false)."
  type        = list(string)
  default     = []
}

# -- serving ----------------------------------------------------------------------------

variable "serving_image_tag" {
  description = "Tag of the serving image in the serving ECR repository for the first task definition. null creates no service yet: push the image, then set it. Later revisions belong to the controller."
  type        = string
  default     = null

  validation {
    condition     = var.serving_image_tag == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.serving_image_tag))
    error_message = "serving_image_tag must be a valid image tag (letters, digits, '_', '.', '-')."
  }
}

variable "serving_image" {
  description = "Full serving image reference, overriding the ECR repository and serving_image_tag (e.g. an image in another registry)."
  type        = string
  default     = null
}

variable "serving_cpu" {
  description = "Fargate CPU units of a serving task."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.serving_cpu)
    error_message = "serving_cpu must be a Fargate size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "serving_memory" {
  description = "Memory (MiB) of a serving task; must pair with serving_cpu on Fargate."
  type        = number
  default     = 1024

  validation {
    condition     = var.serving_memory >= 512 && var.serving_memory <= 122880
    error_message = "serving_memory must be between 512 and 122880 MiB."
  }
}

variable "serving_desired_count" {
  description = "Tasks per service when the service is created. Afterwards the controller (ModelDeployment replicas) and auto scaling own the count."
  type        = number
  default     = 2

  validation {
    condition     = var.serving_desired_count >= 0
    error_message = "serving_desired_count must be 0 or more."
  }
}

variable "health_check_grace_period_seconds" {
  description = "Seconds ECS ignores failing load balancer health checks of a new task while it loads its model."
  type        = number
  default     = 60

  validation {
    condition     = var.health_check_grace_period_seconds >= 0 && var.health_check_grace_period_seconds <= 2147483647
    error_message = "health_check_grace_period_seconds must be 0 or more."
  }
}

variable "autoscaling" {
  description = "Application Auto Scaling of each service: task range and a target tracking policy on average CPU (percent) or ALB requests per task (requests per minute)."
  type = object({
    min_capacity = optional(number, 1)
    max_capacity = optional(number, 4)
    metric       = optional(string, "cpu")
    target_value = optional(number, 60)
  })
  default = {}

  validation {
    condition     = contains(["cpu", "requests"], var.autoscaling.metric)
    error_message = "autoscaling.metric must be \"cpu\" or \"requests\"."
  }

  validation {
    condition     = var.autoscaling.min_capacity >= 0 && var.autoscaling.max_capacity >= var.autoscaling.min_capacity && var.autoscaling.target_value > 0
    error_message = "autoscaling needs 0 <= min_capacity <= max_capacity and a positive target_value."
  }
}

# -- load balancer ----------------------------------------------------------------------

variable "health_check_path" {
  description = "Path the target groups probe on the serving port (200 = healthy). /ready needs a verified model loaded, so a model that cannot load gets no traffic and fails its rollout; /health is liveness only."
  type        = string
  default     = "/ready"

  validation {
    condition     = can(regex("^/[A-Za-z0-9/_.-]*$", var.health_check_path))
    error_message = "health_check_path must be a URL path starting with '/' (e.g. /health)."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener; HTTP then redirects to HTTPS. null serves plain HTTP on port 80."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:...)."
  }
}

variable "ingress_cidr_blocks" {
  description = "IPv4 CIDR blocks allowed to reach the load balancers."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for cidr in var.ingress_cidr_blocks : can(cidrnetmask(cidr))])
    error_message = "ingress_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "alb_internal" {
  description = "Make the load balancers internal (reachable only inside the VPC)."
  type        = bool
  default     = false
}

variable "alb_deletion_protection" {
  description = "Deletion protection on the load balancers; set false before `terraform destroy`."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "Existing bucket (with the ELB log delivery policy) for load balancer access logs; null turns them off."
  type        = string
  default     = null
}

# -- logs -------------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "log_kms_key_arn" {
  description = "KMS key that encrypts the log groups (its policy must allow CloudWatch Logs); null uses CloudWatch's default encryption."
  type        = string
  default     = null
}

# -- controller -------------------------------------------------------------------------

variable "controller_oidc_provider_arn" {
  description = "IAM OIDC provider of an EKS cluster (IRSA): the controller role then trusts controller_service_account; null makes it trust ECS tasks."
  type        = string
  default     = null

  validation {
    condition     = var.controller_oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+", var.controller_oidc_provider_arn))
    error_message = "controller_oidc_provider_arn must be an IAM OIDC provider ARN (arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/...)."
  }
}

variable "controller_service_account" {
  description = "Kubernetes namespace and service account of the controller (IRSA only)."
  type = object({
    namespace = string
    name      = string
  })
  default = {
    namespace = "mlops-system"
    name      = "mlops-controller"
  }
}

# -- model signing ----------------------------------------------------------------------

variable "publisher_principal_arns" {
  description = "IAM role or user ARNs that may sign model versions with the model-signing key (kms:Sign): the CI or release identities that run `mlopsctl publish` and `mlopsctl sign`. Everyone else is denied kms:Sign by the key policy; empty means nobody can sign yet. They must exist before the apply (KMS rejects a key policy naming an unknown principal)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.publisher_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn))])
    error_message = "publisher_principal_arns must be IAM role or user ARNs such as arn:aws:iam::123456789012:role/release."
  }
}

variable "promoter_principal_arns" {
  description = "IAM role or user ARNs that run `mlopsctl promote` and `mlopsctl rollback`: they may seal promotion-log entries with the promotion-signing key (kms:Sign), as the controller role always may. Everyone else, the publishers included, is denied kms:Sign on that key. They must exist before the apply."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.promoter_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn))])
    error_message = "promoter_principal_arns must be IAM role or user ARNs such as arn:aws:iam::123456789012:role/release."
  }
}

# -- training ---------------------------------------------------------------------------

variable "training_image_tag" {
  description = "Tag of the training image in the training ECR repository; null creates no training task definition yet (the role, log group and launcher policy exist regardless)."
  type        = string
  default     = null

  validation {
    condition     = var.training_image_tag == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.training_image_tag))
    error_message = "training_image_tag must be a valid image tag (letters, digits, '_', '.', '-')."
  }
}

variable "training_image" {
  description = "Full training image reference, overriding the ECR repository and training_image_tag."
  type        = string
  default     = null
}

variable "training_cpu" {
  description = "Fargate CPU units of a remote training task."
  type        = number
  default     = 2048

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.training_cpu)
    error_message = "training_cpu must be a Fargate size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "training_memory" {
  description = "Memory (MiB) of a remote training task; must pair with training_cpu on Fargate."
  type        = number
  default     = 8192

  validation {
    condition     = var.training_memory >= 512 && var.training_memory <= 122880
    error_message = "training_memory must be between 512 and 122880 MiB."
  }
}

variable "training_ephemeral_storage_gib" {
  description = "Task storage (GiB) of a remote training task: the data and the artifacts are staged there."
  type        = number
  default     = 50

  validation {
    condition     = var.training_ephemeral_storage_gib >= 21 && var.training_ephemeral_storage_gib <= 200
    error_message = "training_ephemeral_storage_gib must be between 21 and 200 (Fargate's range)."
  }
}

variable "training_data_object_arns" {
  description = "Further S3 object ARNs (patterns allowed, e.g. arn:aws:s3:::my-data/usedcars/*) the training role may read; the artifact bucket's {project}/data/ prefix is always readable."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.training_data_object_arns : can(regex("^arn:aws[a-z-]*:s3:::[^/]+/.+$", arn))])
    error_message = "training_data_object_arns must be S3 object ARNs such as arn:aws:s3:::bucket/prefix/*."
  }
}

# -- drift job --------------------------------------------------------------------------

variable "drift_image" {
  description = "Image of the drift job; null runs it on the serving image (once serving_image_tag or serving_image is set)."
  type        = string
  default     = null
}

variable "drift_command" {
  description = "Command of the drift job container; it runs once per env with MLOPS_PROJECT and MLOPS_ENV set (exit 0 no drift, 1 drift, 7 too few captured rows)."
  type        = list(string)
  default     = ["python", "-m", "monitoring"]

  validation {
    condition     = length(var.drift_command) > 0
    error_message = "drift_command must name a command."
  }
}

variable "drift_schedule_expression" {
  description = "EventBridge schedule of the drift job, e.g. rate(1 day) or cron(0 6 * * ? *)."
  type        = string
  default     = "rate(1 day)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.drift_schedule_expression))
    error_message = "drift_schedule_expression must be rate(...) or cron(...)."
  }
}

variable "drift_window" {
  description = "How far back each drift run looks (MLOPS_DRIFT_WINDOW), e.g. 24h; match the schedule."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?[smhdw]$", var.drift_window))
    error_message = "drift_window must be a duration like 30m, 24h or 7d."
  }
}

variable "drift_retry_attempts" {
  description = "Times EventBridge Scheduler retries a drift run it could not start, before the dead-letter queue."
  type        = number
  default     = 3

  validation {
    condition     = var.drift_retry_attempts >= 0 && var.drift_retry_attempts <= 185
    error_message = "drift_retry_attempts must be 0 to 185."
  }
}

variable "drift_retry_max_age_seconds" {
  description = "How long EventBridge Scheduler keeps retrying a drift run (60 to 86400 seconds)."
  type        = number
  default     = 3600

  validation {
    condition     = var.drift_retry_max_age_seconds >= 60 && var.drift_retry_max_age_seconds <= 86400
    error_message = "drift_retry_max_age_seconds must be 60 to 86400."
  }
}

variable "drift_cpu" {
  description = "Fargate CPU units of the drift task."
  type        = number
  default     = 512
}

variable "drift_memory" {
  description = "Memory (MiB) of the drift task."
  type        = number
  default     = 1024
}
