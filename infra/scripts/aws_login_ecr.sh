#!/usr/bin/env bash
# Log docker in to the account's ECR registry, so build_push_serving.sh can push.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: aws_login_ecr.sh [--region REGION] [--registry HOST]

Logs docker in to Amazon ECR with a token from `aws ecr get-login-password`.

  --region REGION   AWS region of the registry (default: $AWS_REGION, $AWS_DEFAULT_REGION,
                    or the AWS CLI's configured region)
  --registry HOST   registry host, ACCOUNT.dkr.ecr.REGION.amazonaws.com (default: the
                    caller's account, from `aws sts get-caller-identity`)
  -h, --help        show this help

Example:
  infra/scripts/aws_login_ecr.sh --region us-east-1
USAGE
}

die() {
  echo "aws_login_ecr.sh: $*" >&2
  echo "run 'aws_login_ecr.sh --help' for usage" >&2
  exit 2
}

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "aws_login_ecr.sh: '$1' is not installed or not on PATH" >&2; exit 127; }
}

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
registry=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --region)
      [[ $# -ge 2 && -n "$2" ]] || die "--region needs a value"
      region="$2"
      shift 2
      ;;
    --registry)
      [[ $# -ge 2 && -n "$2" ]] || die "--registry needs a value"
      registry="$2"
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      die "unexpected argument '$1'"
      ;;
  esac
done

need aws
need docker

if [[ -z "$region" ]]; then
  region="$(aws configure get region || true)"
fi
[[ -n "$region" ]] || die "no AWS region: pass --region or set AWS_REGION"
[[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "'$region' does not look like an AWS region (e.g. us-east-1)"

if [[ -z "$registry" ]]; then
  account="$(aws sts get-caller-identity --query Account --output text)"
  [[ "$account" =~ ^[0-9]{12}$ ]] || die "could not read the AWS account id (got '$account'); check your credentials"
  registry="${account}.dkr.ecr.${region}.amazonaws.com"
fi

# The password goes through stdin, never the command line.
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
echo "logged in to $registry"
