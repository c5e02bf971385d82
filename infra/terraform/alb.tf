# One application load balancer per env. Each has two target groups, blue (serving now)
# and green (for blue/green later); the listener forwards by weight, 100 to blue.

locals {
  target_groups = {
    for pair in setproduct(var.envs, ["blue", "green"]) : "${pair[0]}-${pair[1]}" => {
      env   = pair[0]
      color = pair[1]
      name  = local.env_names[pair[0]]["tg_${pair[1]}"]
    }
  }
  https = var.certificate_arn != null
}

resource "aws_lb" "this" {
  # checkov:skip=CKV2_AWS_28: a WAF web ACL is the account's choice; attach one to the alb_arn output
  # checkov:skip=CKV2_AWS_20: without var.certificate_arn there is no HTTPS to redirect to; with it, port 80 redirects (aws_lb_listener.http_redirect)
  # checkov:skip=CKV_AWS_91: access logs are optional via var.alb_access_logs_bucket (the bucket needs the ELB delivery policy)
  for_each = local.envs

  name                       = local.env_names[each.key].alb
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.alb_internal ? local.private_subnet_ids : local.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "alb/${local.env_names[each.key].alb}"
      enabled = true
    }
  }

  tags = local.env_tags[each.key]
}

resource "aws_lb_target_group" "this" {
  # checkov:skip=CKV_AWS_378: TLS ends at the load balancer; tasks in private subnets speak HTTP on the serving port
  for_each = local.target_groups

  name                 = each.value.name
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = local.serving_port
  vpc_id               = local.vpc_id
  deregistration_delay = 30

  health_check {
    enabled             = true
    path                = var.health_check_path
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(local.env_tags[each.value.env], { "mlops:color" = each.value.color })
}

# Without a certificate: plain HTTP forwarding to the services.
resource "aws_lb_listener" "http_forward" {
  # checkov:skip=CKV_AWS_2: only created when var.certificate_arn is null; with a certificate port 80 redirects to HTTPS
  # checkov:skip=CKV_AWS_103: plain HTTP has no TLS policy; set var.certificate_arn for HTTPS with TLS 1.2+
  # checkov:skip=CKV2_AWS_20: only created when var.certificate_arn is null, so there is no HTTPS listener to redirect to
  for_each = local.https ? toset([]) : local.envs

  load_balancer_arn = aws_lb.this[each.key].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "forward"
    forward {
      target_group {
        arn    = aws_lb_target_group.this["${each.key}-blue"].arn
        weight = 100
      }
      target_group {
        arn    = aws_lb_target_group.this["${each.key}-green"].arn
        weight = 0
      }
    }
  }

  tags = local.env_tags[each.key]
}

# With a certificate: HTTPS, and HTTP redirects to it.
resource "aws_lb_listener" "https" {
  for_each = local.https ? local.envs : toset([])

  load_balancer_arn = aws_lb.this[each.key].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type = "forward"
    forward {
      target_group {
        arn    = aws_lb_target_group.this["${each.key}-blue"].arn
        weight = 100
      }
      target_group {
        arn    = aws_lb_target_group.this["${each.key}-green"].arn
        weight = 0
      }
    }
  }

  tags = local.env_tags[each.key]
}

# Each env's production listener rule (all paths, to blue), the rule ECS moves the weights
# of during Canary, Linear and BlueGreen deployments (advancedConfiguration). The weights
# belong to ECS from then on: Terraform ignores them, as it does the services'.
resource "aws_lb_listener_rule" "production" {
  for_each = local.envs

  listener_arn = local.https ? aws_lb_listener.https[each.key].arn : aws_lb_listener.http_forward[each.key].arn
  priority     = 1

  action {
    type = "forward"
    forward {
      target_group {
        arn    = aws_lb_target_group.this["${each.key}-blue"].arn
        weight = 100
      }
      target_group {
        arn    = aws_lb_target_group.this["${each.key}-green"].arn
        weight = 0
      }
    }
  }

  condition {
    path_pattern {
      values = ["/*"]
    }
  }

  tags = local.env_tags[each.key]

  lifecycle {
    ignore_changes = [action]
  }
}

resource "aws_lb_listener" "http_redirect" {
  for_each = local.https ? local.envs : toset([])

  load_balancer_arn = aws_lb.this[each.key].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }

  tags = local.env_tags[each.key]
}
