#!/usr/bin/env bash
# The seed's flow: train a project with `mlopsctl train`, then publish the trained version
# to the artifact bucket with `mlopsctl publish`.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: train_publish.sh PROJECT_DIR [--data CSV_OR_S3_URI] [--bucket NAME] [--platform NAME] [--region REGION]

Runs `mlopsctl train` then `mlopsctl publish` for PROJECT_DIR (the folder with
project.yaml); publish runs only if training succeeded. Publishing changes nothing that
is live: promote the printed version with `mlopsctl promote VERSION --env ENV` or a
ModelDeployment.

  PROJECT_DIR        project folder containing project.yaml
  --data SOURCE      training CSV path or s3:// URI (default: data.source in project.yaml)
  --bucket NAME      artifact bucket (sets MLOPS_ARTIFACT_BUCKET; e.g.
                     `terraform output -raw artifact_bucket`)
  --platform NAME    platform name (sets MLOPS_PLATFORM; default mlops)
  --region REGION    AWS region (sets AWS_REGION)
  -h, --help         show this help

Example:
  infra/scripts/train_publish.sh projects/usedcar-price --bucket "$(terraform output -raw artifact_bucket)"
USAGE
}

die() {
  echo "train_publish.sh: $*" >&2
  echo "run 'train_publish.sh --help' for usage" >&2
  exit 2
}

project_dir=""
train_args=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --data)
      [[ $# -ge 2 && -n "$2" ]] || die "--data needs a value"
      train_args+=(--data "$2")
      shift 2
      ;;
    --bucket)
      [[ $# -ge 2 && -n "$2" ]] || die "--bucket needs a value"
      export MLOPS_ARTIFACT_BUCKET="$2"
      shift 2
      ;;
    --platform)
      [[ $# -ge 2 && -n "$2" ]] || die "--platform needs a value"
      export MLOPS_PLATFORM="$2"
      shift 2
      ;;
    --region)
      [[ $# -ge 2 && -n "$2" ]] || die "--region needs a value"
      export AWS_REGION="$2" AWS_DEFAULT_REGION="$2"
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*)
      die "unknown option '$1'"
      ;;
    *)
      [[ -z "$project_dir" ]] || die "only one PROJECT_DIR, got '$project_dir' and '$1'"
      project_dir="$1"
      shift
      ;;
  esac
done

[[ -n "$project_dir" ]] || die "missing PROJECT_DIR"
[[ -d "$project_dir" ]] || die "project folder '$project_dir' does not exist"
[[ -f "$project_dir/project.yaml" ]] || die "'$project_dir' has no project.yaml (create one with 'mlopsctl init NAME')"
command -v mlopsctl >/dev/null 2>&1 \
  || { echo "train_publish.sh: 'mlopsctl' is not on PATH (pip install -e . in the repository, or activate its venv)" >&2; exit 127; }

echo "==> mlopsctl train --project-dir $project_dir"
mlopsctl train --project-dir "$project_dir" ${train_args[@]+"${train_args[@]}"}
echo "==> mlopsctl publish --project-dir $project_dir"
mlopsctl publish --project-dir "$project_dir"
