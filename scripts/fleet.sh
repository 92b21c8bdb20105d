#!/usr/bin/env bash
# The test fleet: real Debian 12 hosts on this machine, reached over SSH.
#
#   scripts/fleet.sh up      build (or reuse) the rootfs, start every host of inventories/fleet
#   scripts/fleet.sh down    remove every fleet container, SSH master and overlay; idempotent
#   scripts/fleet.sh status  one line per host
# Environment: COHORT_FLEET_INVENTORY (default inventories/fleet), COHORT_FLEET_NAME
# (default fleet), COHORT_FLEET_DIR (keys, known_hosts, the link to the SSH sockets; default .fleet).
#
# Each host is a podman container with systemd as PID 1, its own process table
# and hostname, its own overlay on one shared, cached Debian 12 rootfs (built with
# mmdebstrap), and its own loopback address (127.0.0.N, host network) that sshd
# and every service of the host bind to. Ansible reaches it as the non-root user
# `deploy` (passwordless sudo, key-based SSH) like any VM. The host names and
# addresses come from inventories/fleet (one source of truth).
# See docs/fleet.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fleet_dir=${COHORT_FLEET_DIR:-$root/.fleet}
cache_dir=${COHORT_FLEET_CACHE:-/var/cache/cohort-rollout}
inventory=${COHORT_FLEET_INVENTORY:-$root/inventories/fleet}
# Several fleets may run at once (the integration fleet, Molecule's hosts): each
# has a name, used in its containers' names and label, and its own addresses.
fleet_name=${COHORT_FLEET_NAME:-fleet}
label=cohort.rollout.fleet
prefix=cohort-$fleet_name-
suite=bookworm
mirror=${COHORT_FLEET_MIRROR:-http://deb.debian.org/debian}
security_mirror=${COHORT_FLEET_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# The rootfs: only what any VM of a fleet has before configuration management.
packages=(openssh-server python3 sudo systemd systemd-sysv dbus ca-certificates)

# Podman's own configuration for the fleet (not /etc/containers): runc, cgroupfs,
# and explicit ulimits (without nproc every container fails with
# "error setting rlimit type 6" on this kind of machine). nofile is a VM's order
# of magnitude: HAProxy with maxconn 4096 needs ~8,200 descriptors.
export CONTAINERS_CONF=$fleet_dir/containers.conf

die() { echo "fleet: $*" >&2; exit 1; }
log() { echo "fleet: $*" >&2; }

need_tools() {
  local missing=()
  for t in podman runc mmdebstrap ssh ssh-keygen; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run 'make setup' (it installs podman, runc, mmdebstrap, openssh-client)"
}

write_podman_conf() {
  mkdir -p "$fleet_dir"
  install -m 0644 scripts/podman/containers.conf "$CONTAINERS_CONF"
}

# name<TAB>address, one line per host of the fleet inventory.
fleet_hosts() {
  "$root/.venv/bin/ansible-inventory" -i "$inventory" --list 2>/dev/null | python3 -c '
import json, sys
data = json.load(sys.stdin)
for name, hv in sorted(data["_meta"]["hostvars"].items()):
    print(name + "\t" + hv["ansible_host"])
'
}

# Bump when build_rootfs changes what it makes: the cache key is this, the suite,
# the mirror and the package list.
rootfs_recipe=1

rootfs_key() {
  printf '%s\n' "$rootfs_recipe" "$suite" "$mirror" "${packages[@]}" | sha256sum | cut -c1-16
}

build_rootfs() {
  local out=$1 tmp
  tmp=$(mktemp -d "$cache_dir/rootfs.build.XXXXXX")
  log "building the Debian 12 rootfs with mmdebstrap (cached as $out)"
  local include
  include=$(IFS=,; echo "${packages[*]}")
  # The customize hooks run once for the shared image: a deploy user with
  # passwordless sudo, no host keys and an empty machine-id (each host makes its
  # own at first boot), sshd not started until its address is configured.
  # shellcheck disable=SC2016  # "$1" is the rootfs, expanded by mmdebstrap's hook shell
  mmdebstrap --quiet --variant=apt --format=directory --include="$include" \
    --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash deploy' \
    --customize-hook='echo "deploy ALL=(ALL) NOPASSWD: ALL" > "$1/etc/sudoers.d/deploy" && chmod 0440 "$1/etc/sudoers.d/deploy"' \
    --customize-hook='install -d -m 0700 -o 1000 -g 1000 "$1/home/deploy/.ssh"' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook=': > "$1/etc/machine-id"' \
    --customize-hook='chroot "$1" systemctl disable ssh.service' \
    --customize-hook='chroot "$1" systemctl mask getty@tty1.service console-getty.service systemd-remount-fs.service' \
    "$suite" "$tmp/rootfs" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security_mirror $suite-security main"
  mv "$tmp/rootfs" "$out"
  rmdir "$tmp"
}

ensure_rootfs() {
  mkdir -p "$cache_dir"
  local key out
  key=$(rootfs_key)
  out=$cache_dir/rootfs-$suite-$key
  if [ ! -d "$out" ]; then
    local t0=$SECONDS
    build_rootfs "$out"
    log "rootfs built in $((SECONDS - t0)) s"
    # Older rootfs versions are dead weight once the package list changed, but
    # only remove them when no fleet (of any name) runs: one may still use them.
    if [ -z "$(podman ps -a --filter "label=$label" --format '{{.ID}}')" ]; then
      find "$cache_dir" -maxdepth 1 -name "rootfs-$suite-*" ! -name "rootfs-$suite-$key" -exec rm -rf {} +
    fi
  fi
  echo "$out"
}

ensure_key() {
  mkdir -p "$fleet_dir"
  chmod 0700 "$fleet_dir"
  [ -f "$fleet_dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C cohort-fleet -f "$fleet_dir/id_ed25519"
  chmod 0600 "$fleet_dir/id_ed25519"  # ssh refuses a private key others can read
}

# SSH control sockets. A socket's path must fit in 108 bytes (sun_path), and ssh adds 17
# characters to it while the master starts, so the sockets cannot live under a clone whose path
# is long: they live in a private directory under /tmp (mktemp: a fresh name, 0700, ours) and
# $fleet_dir/cp is a link to it. The inventories follow the link (ansible_control_path_dir,
# Ansible then names each socket with a 10-character hash); `down` and the leftover checks find
# the sockets through it.
ensure_cp_dir() {
  cp_target_ok && return 0
  remove_cp_dir
  ln -s "$(mktemp -d /tmp/cohort-ssh-XXXXXXXX)" "$fleet_dir/cp"
}

# True when $fleet_dir/cp links to a directory (not a link) that is ours and 0700.
cp_target_ok() {
  local target
  [ -L "$fleet_dir/cp" ] || return 1
  target=$(readlink "$fleet_dir/cp")
  [ -d "$target" ] && [ ! -L "$target" ] && [ "$(stat -c %u:%a "$target")" = "$(id -u):700" ]
}

# Closes the SSH masters through their sockets, then removes the socket directory (only one that
# is ours) and the link; also a real `cp` directory from before the link.
remove_cp_dir() {
  local link=$fleet_dir/cp dir=
  if cp_target_ok; then
    dir=$(readlink "$link")
  elif [ -d "$link" ] && [ ! -L "$link" ]; then
    dir=$link
  fi
  if [ -n "$dir" ]; then
    local sock
    for sock in "$dir"/*; do
      [ -S "$sock" ] || continue
      ssh -F /dev/null -o ControlPath="$sock" -O exit placeholder >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
  fi
  rm -f "$link"
}

container_running() {
  [ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}

start_host() {
  local name=$1 addr=$2 rootfs=$3 c=$prefix$1
  # A running host is kept only if it runs on this rootfs (a rebuilt one replaces it).
  if container_running "$c" && \
     [ "$(podman inspect --format '{{index .Config.Labels "cohort.rollout.rootfs"}}' "$c")" = "$(basename "$rootfs")" ]; then
    return 0
  fi
  podman rm -f "$c" >/dev/null 2>&1 || true
  # Every option before --rootfs; ':O' gives the host its own overlay on the shared rootfs.
  # SYS_PTRACE: root on a VM may read any process's /proc/<pid>/fd (podman drops it by
  # default), which is how the tests match sockets to the host's processes.
  podman run --detach --name "$c" --hostname "$name" --label "$label=$fleet_name" --label "cohort.rollout.rootfs=$(basename "$rootfs")" \
    --network host --add-host "$name:$addr" --cap-add SYS_PTRACE --systemd=always --stop-signal SIGRTMIN+3 --stop-timeout 10 \
    --rootfs "$rootfs:O" /sbin/init >/dev/null
}

configure_host() {
  local name=$1 addr=$2 c=$prefix$1
  # Wait for systemd to come up (running, or degraded by a unit that needs real hardware).
  local state=
  # Seconds on an idle machine; a loaded one (CI running other tiers) needs far more.
  for _ in $(seq 1 600); do
    state=$(podman exec "$c" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.1
  done
  case "$state" in running|degraded) ;; *) die "$name: systemd did not come up (state: ${state:-none})" ;; esac
  podman exec -i "$c" sh -eu -c '
    addr=$1
    ssh-keygen -A >/dev/null
    cat > /etc/ssh/sshd_config.d/fleet.conf <<EOF
ListenAddress $addr
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
EOF
    cat > /home/deploy/.ssh/authorized_keys
    chown deploy:deploy /home/deploy/.ssh/authorized_keys
    chmod 0600 /home/deploy/.ssh/authorized_keys
    systemctl start ssh.service
  ' sh "$addr" <"$fleet_dir/id_ed25519.pub"
}

write_known_hosts() {
  local name=$1 addr=$2 c=$prefix$1 key
  key=$(podman exec "$c" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)
  echo "$addr $key" >>"$fleet_dir/known_hosts.tmp"
}

wait_ssh() {
  local name=$1 addr=$2
  for _ in $(seq 1 300); do
    if ssh -F /dev/null -i "$fleet_dir/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 \
         -o UserKnownHostsFile="$fleet_dir/known_hosts" -o StrictHostKeyChecking=yes \
         "deploy@$addr" true 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  die "$name ($addr): no SSH login as deploy after 60 s"
}

cmd_up() {
  need_tools
  [ -x "$root/.venv/bin/ansible-inventory" ] || die "no .venv: run 'make setup' first"
  write_podman_conf
  ensure_key
  ensure_cp_dir
  local rootfs t0=$SECONDS
  rootfs=$(ensure_rootfs)
  mapfile -t hosts < <(fleet_hosts)
  [ ${#hosts[@]} -gt 0 ] || die "no hosts in $inventory"
  local line name addr
  for line in "${hosts[@]}"; do
    IFS=$'\t' read -r name addr <<<"$line"
    case "$addr" in 127.*) ;; *) die "$name: address $addr is not on loopback (127.0.0.0/8)" ;; esac
    start_host "$name" "$addr" "$rootfs"
  done
  : >"$fleet_dir/known_hosts.tmp"
  for line in "${hosts[@]}"; do
    IFS=$'\t' read -r name addr <<<"$line"
    configure_host "$name" "$addr"
    write_known_hosts "$name" "$addr"
  done
  mv "$fleet_dir/known_hosts.tmp" "$fleet_dir/known_hosts"
  for line in "${hosts[@]}"; do
    IFS=$'\t' read -r name addr <<<"$line"
    wait_ssh "$name" "$addr"
  done
  log "${#hosts[@]} hosts up in $((SECONDS - t0)) s (inventory: ${inventory#"$root"/})"
}

cmd_down() {
  command -v podman >/dev/null 2>&1 || { log "no podman: nothing to remove"; return 0; }
  [ -f "$CONTAINERS_CONF" ] || write_podman_conf
  # SSH masters that Ansible left behind (ControlPersist) go first, by their sockets.
  remove_cp_dir
  local ids
  ids=$(podman ps -a --filter "label=$label=$fleet_name" --format '{{.ID}}')
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086  # one argument per container id
    podman rm -f --time 10 $ids >/dev/null
    log "removed $(wc -w <<<"$ids") host(s)"
  else
    log "no fleet hosts running"
  fi
}

cmd_status() {
  command -v podman >/dev/null 2>&1 || { log "no podman"; return 0; }
  [ -f "$CONTAINERS_CONF" ] || write_podman_conf
  podman ps -a --filter "label=$label=$fleet_name" --format '{{.Names}}\t{{.Status}}'
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
