# Either a small VPC (two public subnets for the load balancers, two private subnets for the
# tasks, one NAT gateway) or the caller's own VPC and subnets.

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: only the first two zones are used, so a newly added zone changes nothing; var.availability_zones pins them
  count = var.create_vpc && length(var.availability_zones) == 0 ? 1 : 0
  state = "available"
}

locals {
  azs = (
    !var.create_vpc ? [] :
    length(var.availability_zones) > 0 ? var.availability_zones :
    slice(sort(data.aws_availability_zones.available[0].names), 0, 2)
  )

  vpc_id             = var.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  public_subnet_ids  = var.create_vpc ? aws_subnet.public[*].id : var.public_subnet_ids
  private_subnet_ids = var.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids
}

resource "aws_vpc" "this" {
  # checkov:skip=CKV2_AWS_11: flow logs belong to the account's network baseline; bring your own VPC to have them
  count                = var.create_vpc ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = var.platform })
}

# No rules: nothing may use the default security group.
resource "aws_default_security_group" "this" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.platform}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = var.platform })
}

resource "aws_subnet" "public" {
  count                   = var.create_vpc ? 2 : 0
  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false
  tags                    = merge(local.tags, { Name = "${var.platform}-public-${local.azs[count.index]}" })
}

resource "aws_subnet" "private" {
  count             = var.create_vpc ? 2 : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)
  tags              = merge(local.tags, { Name = "${var.platform}-private-${local.azs[count.index]}" })
}

resource "aws_eip" "nat" {
  count  = var.create_vpc ? 1 : 0
  domain = "vpc"
  tags   = merge(local.tags, { Name = "${var.platform}-nat" })
}

resource "aws_nat_gateway" "this" {
  count         = var.create_vpc ? 1 : 0
  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = merge(local.tags, { Name = var.platform })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }
  tags = merge(local.tags, { Name = "${var.platform}-public" })
}

resource "aws_route_table" "private" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[0].id
  }
  tags = merge(local.tags, { Name = "${var.platform}-private" })
}

resource "aws_route_table_association" "public" {
  count          = var.create_vpc ? 2 : 0
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table_association" "private" {
  count          = var.create_vpc ? 2 : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

# -- security groups: internet -> load balancer -> tasks on 8080; tasks -> HTTPS out ----

resource "aws_security_group" "alb" {
  name        = "${var.platform}-${var.project}-alb"
  description = "Load balancers of ${var.project}: HTTP(S) in, the serving port to the tasks out"
  vpc_id      = local.vpc_id
  tags        = local.tags

  lifecycle {
    precondition {
      condition     = var.create_vpc || (var.vpc_id != null && length(var.public_subnet_ids) >= 2 && length(var.private_subnet_ids) >= 1)
      error_message = "With create_vpc = false, set vpc_id, at least two public_subnet_ids (two AZs) and private_subnet_ids."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  # checkov:skip=CKV_AWS_260: the endpoint is public by design; narrow it with var.ingress_cidr_blocks
  for_each = {
    for pair in setproduct(var.ingress_cidr_blocks, var.certificate_arn == null ? [80] : [80, 443]) :
    "${pair[0]}-${pair[1]}" => { cidr = pair[0], port = pair[1] }
  }
  security_group_id = aws_security_group.alb.id
  description       = "HTTP${each.value.port == 443 ? "S" : ""} from ${each.value.cidr}"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the serving tasks"
  referenced_security_group_id = aws_security_group.serving.id
  ip_protocol                  = "tcp"
  from_port                    = local.serving_port
  to_port                      = local.serving_port
  tags                         = local.tags
}

resource "aws_security_group" "serving" {
  name        = "${var.platform}-${var.project}-serving"
  description = "Serving tasks of ${var.project}: the serving port from the load balancers, HTTPS out"
  vpc_id      = local.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "serving_from_alb" {
  security_group_id            = aws_security_group.serving.id
  description                  = "From the load balancers"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.serving_port
  to_port                      = local.serving_port
  tags                         = local.tags
}

resource "aws_security_group" "tasks_egress" {
  # checkov:skip=CKV2_AWS_5: attached to the drift tasks through aws_scheduler_schedule.drift's RunTask network configuration, which checkov does not follow
  name        = "${var.platform}-${var.project}-jobs"
  description = "Batch tasks of ${var.project} (drift job): no inbound, HTTPS out"
  vpc_id      = local.vpc_id
  tags        = local.tags
}

# S3, SSM, ECR and CloudWatch Logs are reached over HTTPS (through NAT or VPC endpoints).
resource "aws_vpc_security_group_egress_rule" "https_out" {
  for_each = {
    serving = aws_security_group.serving.id
    jobs    = aws_security_group.tasks_egress.id
  }
  security_group_id = each.value
  description       = "HTTPS to AWS APIs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  tags              = local.tags
}
