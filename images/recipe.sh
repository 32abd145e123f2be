#!/usr/bin/env bash
# Build a systemd-capable Debian lab image with debootstrap and import it into podman.
#
#   images/recipe.sh SUITE
#
# The image is cached: its tag carries a hash of this recipe, so it is rebuilt only when the
# recipe changes. The rootfs tarball is kept in .cache/images so a `podman system reset` does
# not force a rebuild.
set -euo pipefail

suite=${1:?usage: images/recipe.sh bookworm|trixie}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cache=${LAB_CACHE_DIR:-$top/.cache}
mirror=${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
recipe_hash=$(sha256sum "$here/recipe.sh" | cut -c1-12)
image="localhost/agent-ui-pg-lab:${suite}-${recipe_hash}"
tarball="$cache/images/${suite}-${recipe_hash}.tar"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$top/.config/containers.conf}

# Packages every lab host has before Ansible touches it: an init, Python for Ansible, and the
# tools a DBA expects. PostgreSQL itself is NOT here: the roles install it.
include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,gnupg,curl,less,locales

if ! podman image exists "$image"; then
  mkdir -p "$cache/images"
  if [ ! -s "$tarball" ]; then
    root=$(mktemp -d "$cache/images/rootfs-${suite}.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    echo "debootstrap $suite into $root" >&2
    debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >&2
    # Keep downloaded .debs: the host's apt cache is mounted at /var/cache/apt/archives and shared
    # by every scenario, so a package is fetched once per machine.
    cat > "$root/etc/apt/apt.conf.d/90lab" <<'APT'
Binary::apt::APT::Keep-Downloaded-Packages "true";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
APT
    rm -f "$root/etc/apt/apt.conf.d/docker-clean"
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
      "$mirror" "$suite" "$mirror" "$suite" "$suite" > "$root/etc/apt/sources.list"
    # systemd in a container: no getty, no udev settle, machine-id made at boot.
    : > "$root/etc/machine-id"
    # Keep the package lists debootstrap fetched: apt's cache_valid_time trusts their mtime.
    rm -f "$root"/var/cache/apt/archives/*.deb
    for unit in getty@tty1.service systemd-udevd.service systemd-udev-trigger.service \
                systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer; do
      ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    echo "en_US.UTF-8 UTF-8" > "$root/etc/locale.gen"
    chroot "$root" locale-gen >/dev/null 2>&1 || true
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
  fi
  podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' "$tarball" "$image" >&2
fi
# A stable tag for molecule.yml and the lab, pointing at the image of the current recipe.
podman tag "$image" "localhost/agent-ui-pg-lab:${suite}"
# Drop images and tarballs of older recipes.
podman images --format '{{.Repository}}:{{.Tag}}' | grep "^localhost/agent-ui-pg-lab:${suite}-" \
  | grep -v -- "-${recipe_hash}\$" | xargs -r podman rmi >/dev/null 2>&1 || true
find "$cache/images" -maxdepth 1 -name "${suite}-*.tar" ! -name "${suite}-${recipe_hash}.tar" -delete 2>/dev/null || true
echo "$image"
