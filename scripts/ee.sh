#!/usr/bin/env bash
# The execution environment (EE), built here with no registry and no Galaxy (docs/awx.md):
#
#   scripts/ee.sh build    (make ee) build or reuse localhost/cohort-rollout-ee:<version> (+ :latest)
#   scripts/ee.sh name     print the image name the EE is tagged with (no build)
#
# 1. A local base image: Debian 12 made with mmdebstrap and `podman import`, with a Python venv
#    as the build's Python (Debian's system Python refuses ensurepip), apt lists kept (the build
#    installs bindep's system packages with apt-get), and the collections that
#    collections/requirements.yml names copied from the `ansible` PyPI package of .venv into
#    /usr/share/ansible/collections (Galaxy is not reachable). Cached under a key of its inputs.
# 2. `ansible-builder build` of execution-environment.yml, unchanged, with build args that put
#    it on that base (EE_BASE_IMAGE, PKGMGR, PYCMD, ANSIBLE_GALAXY_CLI_COLLECTION_OPTS=--offline).
#    The image carries a label with the key of every input; a build whose inputs did not change
#    is skipped.
#
# Every podman build runs with --network host (podman's default bridge network is a private
# address range, not used here). Package downloads inside the build go through a network that
# intercepts TLS: the host's CA bundle is mounted read-only over the image's for the RUN steps
# only; it is never copied into an image (tests/ee checks this).
# Environment: COHORT_EE_DIR (build context, base tarball; default .ee), COHORT_EE_FILE (default
# execution-environment.yml), COHORT_EE_IMAGE (default localhost/cohort-rollout-ee),
# COHORT_EE_CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt; empty = mount none),
# COHORT_EE_NO_CACHE=1 (reuse no layer of an earlier build: bench/ee_bench.py --cold),
# COHORT_EE_VERBOSITY (ansible-builder --verbosity, default 2; 3 streams the whole build output).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ee_dir=${COHORT_EE_DIR:-$root/.ee}
ee_file=${COHORT_EE_FILE:-execution-environment.yml}
image=${COHORT_EE_IMAGE:-localhost/cohort-rollout-ee}
ca_bundle=${COHORT_EE_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
base_repo=localhost/cohort-rollout-ee-base
suite=bookworm
mirror=${COHORT_EE_MIRROR:-http://deb.debian.org/debian}
security_mirror=${COHORT_EE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What the base has before ansible-builder: Python 3.11 with venv, CA certificates (Debian's).
packages=(python3 python3-venv ca-certificates)
venv=/opt/cohort-ee/venv
pycmd=$venv/bin/python3.11
label=cohort.rollout.ee.inputs

# Podman's settings for these builds, as for the fleet (docs/fleet.md): runc, cgroupfs, and
# explicit ulimits (without nproc, RUN steps fail with "error setting rlimit type 6" here).
export CONTAINERS_CONF=$ee_dir/containers.conf

die() { echo "ee: $*" >&2; exit 1; }
log() { echo "ee: $*" >&2; }

version() { sed -n 's/^version: *//p' galaxy.yml; }

need_tools() {
  local missing=()
  for t in podman runc mmdebstrap; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run 'make setup' (it installs podman, runc and mmdebstrap from Debian's packages)"
  [ -x "$root/.venv/bin/ansible-builder" ] || die "no .venv/bin/ansible-builder: run 'make setup' (it installs the pinned ansible-builder)"
  [ -f "$ee_file" ] || die "no EE definition $ee_file"
  if [ -n "$ca_bundle" ] && [ ! -r "$ca_bundle" ]; then
    die "CA bundle $ca_bundle not readable (COHORT_EE_CA_BUNDLE= to mount none)"
  fi
}

write_podman_conf() {
  mkdir -p "$ee_dir"
  install -m 0644 scripts/podman/containers.conf "$CONTAINERS_CONF"
}

# ns.name per line, from collections/requirements.yml.
collections() {
  "$root/.venv/bin/python" -c '
import sys, yaml
for item in yaml.safe_load(open(sys.argv[1]))["collections"]:
    print(item["name"] if isinstance(item, dict) else item)
' collections/requirements.yml
}

site_packages() {
  "$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

# Bump when build_base changes what it makes.
base_recipe=1

base_key() {
  # The ansible package's version fixes the collections' versions.
  { printf '%s\n' "$base_recipe" "$suite" "$mirror" "$venv" "${packages[@]}"
    grep -i '^ansible==' requirements.txt
    collections; } | sha256sum | cut -c1-16
}

build_base() {
  local ref=$1 tmp site include hooks=() name
  site=$(site_packages)
  for name in $(collections); do
    [ -f "$site/ansible_collections/${name//.//}/MANIFEST.json" ] || \
      die "collection $name is not in the ansible package of .venv ($site): run 'make setup'"
    hooks+=("--customize-hook=mkdir -p \"\$1/usr/share/ansible/collections/ansible_collections/${name%%.*}\" && cp -a \"$site/ansible_collections/${name//.//}\" \"\$1/usr/share/ansible/collections/ansible_collections/${name%%.*}/\"")
  done
  include=$(IFS=,; echo "${packages[*]}")
  tmp=$(mktemp -d "$ee_dir/base.XXXXXX")
  log "building the Debian 12 base image with mmdebstrap ($ref)"
  # apt lists kept: the EE build installs bindep's packages with apt-get.
  # shellcheck disable=SC2016  # "$1" is the rootfs, expanded by mmdebstrap's hook shell
  mmdebstrap --quiet --variant=apt --include="$include" --skip=cleanup/apt/lists \
    --customize-hook="chroot \"\$1\" python3 -m venv $venv" \
    "${hooks[@]}" \
    "$suite" "$tmp/base.tar" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security_mirror $suite-security main"
  # pip in the venv trusts the system's CA store (Debian's bundle in the image; during the
  # build the host's, mounted over it), not the copy of certifi vendored in pip.
  podman import \
    --change "ENV PATH=$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
    --change "LABEL $label.base=$ref" \
    --change 'CMD ["/bin/bash"]' \
    "$tmp/base.tar" "$ref" >/dev/null
  rm -rf "$tmp"
}

ensure_base() {
  local ref
  ref=$base_repo:$(base_key)
  if ! podman image exists "$ref"; then
    local t0=$SECONDS
    build_base "$ref"
    log "base image built in $((SECONDS - t0)) s"
  fi
  echo "$ref"
}

# Every input of the EE build: the base, the definition and the files it names, builder's version.
ee_key() {
  local base=$1
  { echo "$base"; cat "$ee_file" collections/requirements.yml meta/ee-requirements.txt meta/ee-bindep.txt
    "$root/.venv/bin/ansible-builder" --version; } | sha256sum | cut -c1-16
}

cmd_build() {
  need_tools
  write_podman_conf
  local t0=$SECONDS base key tag have
  base=$(ensure_base)
  key=$(ee_key "$base")
  tag=$image:$(version)
  have=$(podman image inspect --format "{{index .Labels \"$label\"}}" "$tag" 2>/dev/null || true)
  if [ "$have" = "$key" ] && podman image exists "$image:latest"; then
    log "$tag is up to date (inputs $key)"
    return 0
  fi
  local extra="--network host --label $label=$key"
  [ -z "$ca_bundle" ] || extra+=" --volume $ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro"
  [ -z "${COHORT_EE_NO_CACHE:-}" ] || extra+=" --no-cache"
  log "building $tag on $base"
  # The context is rewritten from the definition every time (ansible-builder create).
  rm -rf "$ee_dir/context"
  "$root/.venv/bin/ansible-builder" build --file "$ee_file" --context "$ee_dir/context" \
    --container-runtime podman --tag "$tag" --tag "$image:latest" \
    --build-arg EE_BASE_IMAGE="$base" --build-arg PKGMGR=/usr/bin/apt-get \
    --build-arg PYCMD="$pycmd" --build-arg ANSIBLE_GALAXY_CLI_COLLECTION_OPTS=--offline \
    --extra-build-cli-args "$extra" --verbosity "${COHORT_EE_VERBOSITY:-2}"
  log "$tag built in $((SECONDS - t0)) s"
}

case "${1:-}" in
  build) cmd_build ;;
  name) echo "$image:$(version)" ;;
  *) echo "usage: $0 build|name" >&2; exit 2 ;;
esac
