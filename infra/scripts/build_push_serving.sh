#!/usr/bin/env bash
# Build the serving image from serving/Dockerfile and push it to the serving repository.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: build_push_serving.sh REPOSITORY_URL TAG [--context DIR] [--dockerfile FILE] [--platform OS/ARCH]

Builds the serving image and pushes REPOSITORY_URL:TAG. The repository's tags are
immutable, so every build needs a new TAG (e.g. 0.1.0 or a git sha); "latest" is refused.

  REPOSITORY_URL    the serving repository, e.g. `terraform output -raw ecr_repository_url`
  TAG               image tag: letters, digits, '_', '.', '-' (max 128)
  --context DIR     docker build context (default: the repository root)
  --dockerfile FILE Dockerfile (default: serving/Dockerfile in the context)
  --platform P      target platform (default: linux/amd64, what the task definitions run)
  -h, --help        show this help

Example:
  infra/scripts/build_push_serving.sh "$(terraform output -raw ecr_repository_url)" 0.1.0

Run aws_login_ecr.sh first. Prints the pushed image reference with its digest.
USAGE
}

die() {
  echo "build_push_serving.sh: $*" >&2
  echo "run 'build_push_serving.sh --help' for usage" >&2
  exit 2
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
context="$repo_root"
dockerfile=""
target_platform="linux/amd64"
positional=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --context)
      [[ $# -ge 2 && -n "$2" ]] || die "--context needs a value"
      context="$2"
      shift 2
      ;;
    --dockerfile)
      [[ $# -ge 2 && -n "$2" ]] || die "--dockerfile needs a value"
      dockerfile="$2"
      shift 2
      ;;
    --platform)
      [[ $# -ge 2 && -n "$2" ]] || die "--platform needs a value"
      target_platform="$2"
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
      positional+=("$1")
      shift
      ;;
  esac
done

[[ ${#positional[@]} -eq 2 ]] || die "expected REPOSITORY_URL and TAG, got ${#positional[@]} argument(s)"
repository="${positional[0]}"
tag="${positional[1]}"

[[ "$repository" =~ ^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+$ ]] \
  || die "'$repository' is not a repository URL without a tag (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving)"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
  || die "'$tag' is not a valid image tag (letters, digits, '_', '.', '-'; at most 128)"
[[ "$tag" != "latest" ]] || die "the repository's tags are immutable: use a version or git sha, not 'latest'"
[[ -d "$context" ]] || die "build context '$context' is not a directory"
dockerfile="${dockerfile:-$context/serving/Dockerfile}"
[[ -f "$dockerfile" ]] || die "Dockerfile '$dockerfile' not found (pass --dockerfile)"

command -v docker >/dev/null 2>&1 || { echo "build_push_serving.sh: 'docker' is not installed or not on PATH" >&2; exit 127; }

image="${repository}:${tag}"
docker build --platform "$target_platform" --file "$dockerfile" --tag "$image" "$context"
docker push "$image"
digest="$(docker inspect --format '{{index .RepoDigests 0}}' "$image")"
echo "pushed $image"
echo "digest $digest"
