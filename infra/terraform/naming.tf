# Every name this module gives a resource, built from var.platform, var.project and the
# env names exactly as mlops_core/naming.py builds them (tests/infra asserts the two agree).
# Only var.* and local.* appear here, so the tests can evaluate this file on its own.

locals {
  # Load balancer and target group names are limited to 32 characters; longer ones keep a
  # prefix plus 8 hex digits of their sha1 (naming.fit_name).
  elb_name_max = 32

  artifact_bucket             = coalesce(var.artifact_bucket_name, "${var.platform}-artifacts")
  ecs_cluster_name            = var.platform
  ecr_serving_repository      = "${var.platform}/serving"
  ecr_training_repository     = "${var.platform}/training"
  ssm_prefix                  = "/${var.platform}"
  desired_state_prefix        = "deployments/"
  models_prefix               = "${var.project}/models/"
  drift_prefix                = "${var.project}/drift/"
  registration_prefix         = "${var.project}/registration/"
  legacy_registration_key     = "${var.project}/project.json"
  capture_root                = "${var.project}/capture/"
  drift_metrics_namespace     = "${var.platform}/drift"
  model_signing_key_alias     = "alias/${var.platform}-model-signing"
  promotion_signing_key_alias = "alias/${var.platform}-promotion-signing"

  task_execution_role_name     = "${var.platform}-task-execution"
  ecs_infrastructure_role_name = "${var.platform}-ecs-infrastructure"
  controller_role_name         = "${var.platform}-controller"
  serving_task_role_name       = "${var.platform}-${var.project}-serving"
  drift_task_role_name         = "${var.platform}-${var.project}-drift"
  events_role_name             = "${var.platform}-${var.project}-events"
  # "_" never occurs in a project name, so a job family never equals a service family.
  drift_task_family       = "${var.project}_drift"
  drift_log_group_name    = "/ecs/${var.platform}/${var.project}_drift"
  drift_dlq_name          = "${var.platform}-${var.project}-drift-dlq"
  training_task_role_name = "${var.platform}-${var.project}-training"
  training_task_family    = "${var.project}_training"
  training_log_group_name = "/ecs/${var.platform}/${var.project}_training"
  training_data_prefix    = "${var.project}/data/"
  candidates_prefix       = "${var.project}/candidates/"
  promotions_root         = "${var.project}/promotions/"

  # Cost allocation tag keys (naming.COST_TAG_KEYS); main.tf puts them on every resource.
  cost_tag_keys = {
    platform   = "mlops:platform"
    project    = "mlops:project"
    env        = "mlops:env"
    deployment = "mlops:deployment"
  }

  # Unshortened load balancer names per env, then the names per env.
  elb_long_names = {
    for env in var.envs : env => {
      alb      = "${var.platform}-${var.project}-${env}"
      tg_blue  = "${var.platform}-${var.project}-${env}-blue"
      tg_green = "${var.platform}-${var.project}-${env}-green"
    }
  }

  env_names = {
    for env in var.envs : env => merge(
      {
        pointer_param = "/${var.platform}/${var.project}/${env}/model"
        service       = "${var.project}-${env}"
        task_family   = "${var.project}-${env}"
        log_group     = "/ecs/${var.platform}/${var.project}-${env}"
        deployment    = "${var.project}-${env}"
      },
      {
        for key, name in local.elb_long_names[env] : key => (
          length(name) <= local.elb_name_max
          ? name
          : "${substr(name, 0, local.elb_name_max - 9)}-${substr(sha1(name), 0, 8)}"
        )
      },
    )
  }

  # The tags of every resource: var.tags plus the cost allocation tags, which win so that
  # the bill can always be grouped by them (naming.cost_tags). Per-env resources also get
  # the env and deployment tags; the root module repeats the platform-wide pair as its
  # provider's default_tags.
  tags = merge(var.tags, {
    (local.cost_tag_keys.platform) = var.platform
    (local.cost_tag_keys.project)  = var.project
  })
  env_tags = {
    for env in var.envs : env => merge(local.tags, {
      (local.cost_tag_keys.env)        = env
      (local.cost_tag_keys.deployment) = local.env_names[env].deployment
    })
  }
}
