#!/usr/bin/env bash
# Builds kmsfleet's .deb and .rpm from a finished build, with dpkg-deb and
# rpmbuild (no downloads):
#   scripts/package.sh BUILD_DIR OUT_DIR
# Both packages hold the same tree: the two programs (stripped), the
# systemd unit, sysusers.d and tmpfiles.d entries, the example config as a
# conffile, man pages, bash completion, the Prometheus alert rules, the
# static-pod manifest and its config, and the docs.
set -euo pipefail
build=$(cd "${1:?build dir, e.g. build/release}" && pwd)
mkdir -p "${2:?output dir}"
out=$(cd "$2" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^project(kmsfleet VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

stage_tree() {  # stage_tree DIR DOCDIR
  local root=$1 doc=$2
  install -D -m0755 "$build/src/daemon/kmsfleetd" "$root/usr/bin/kmsfleetd"
  install -D -m0755 "$build/src/cli/kmsfleetctl" "$root/usr/bin/kmsfleetctl"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/bin/kmsfleetd" "$root/usr/bin/kmsfleetctl"
  install -D -m0644 "$src/systemd/kmsfleetd.service" "$root/usr/lib/systemd/system/kmsfleetd.service"
  install -D -m0644 "$src/packaging/common/kmsfleet.sysusers" "$root/usr/lib/sysusers.d/kmsfleet.conf"
  install -D -m0644 "$src/packaging/common/kmsfleet.tmpfiles" "$root/usr/lib/tmpfiles.d/kmsfleet.conf"
  # The config holds no secret (keys are files of their own, under pki/).
  install -D -m0644 "$src/deploy/config/config.yaml" "$root/etc/kmsfleet/config.yaml"
  install -D -m0644 "$src/packaging/completion/kmsfleetctl.bash" \
    "$root/usr/share/bash-completion/completions/kmsfleetctl"
  install -D -m0644 "$src/deploy/prometheus/kmsfleet-alerts.yaml" \
    "$root/usr/share/kmsfleet/prometheus/kmsfleet-alerts.yaml"
  # The static-pod flavour (docs/static-pod.md): examples, not installed
  # into the kubelet's manifest directory.
  install -D -m0644 "$src/static-pod/kmsfleetd.yaml" \
    "$root/usr/share/kmsfleet/static-pod/kmsfleetd.yaml"
  install -D -m0644 "$src/deploy/config/config-static-pod.yaml" \
    "$root/usr/share/kmsfleet/static-pod/config.yaml"
  install -D -m0644 "$src/packaging/man/kmsfleetd.8" "$root/usr/share/man/man8/kmsfleetd.8"
  install -D -m0644 "$src/packaging/man/kmsfleetctl.1" "$root/usr/share/man/man1/kmsfleetctl.1"
  gzip -9n "$root/usr/share/man/man8/kmsfleetd.8" "$root/usr/share/man/man1/kmsfleetctl.1"
  install -d "$root/$doc" "$root/$doc/runbooks" "$root/$doc/reference"
  install -m0644 "$src/README.md" "$src/docs/"*.md "$root/$doc/"
  # The runbooks (kmsfleetd(8) points at them) and the policy reference.
  install -m0644 "$src/docs/runbooks/"*.md "$root/$doc/runbooks/"
  install -m0644 "$src/docs/reference/"*.md "$root/$doc/reference/"
}

# Depends: the Debian package of every shared library the programs load.
deb_depends() {
  local root=$1
  ldd "$root/usr/bin/kmsfleetd" "$root/usr/bin/kmsfleetctl" |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
    while read -r lib; do dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib"; done |
    cut -d: -f1 | sort -u |
    while read -r pkg; do echo "$pkg (>= $(dpkg-query -W -f='${Version}' "$pkg"))"; done |
    paste -sd, | sed 's/,/, /g'
}

build_deb() {
  local root=$work/deb arch
  arch=$(dpkg --print-architecture)
  stage_tree "$root" usr/share/doc/kmsfleet
  install -m0644 "$src/packaging/deb/copyright" "$root/usr/share/doc/kmsfleet/copyright"
  printf 'kmsfleet (%s) unstable; urgency=medium\n\n  * Package built from the source tree.\n\n -- The kmsfleet authors <kmsfleet@kmsfleet.invalid>  %s\n' \
    "$version" "$(date -R -d @"${SOURCE_DATE_EPOCH:-0}")" | gzip -9n >"$root/usr/share/doc/kmsfleet/changelog.gz"
  install -d "$root/DEBIAN"
  install -m0755 "$src/packaging/deb/postinst" "$src/packaging/deb/prerm" \
    "$src/packaging/deb/postrm" "$root/DEBIAN/"
  echo /etc/kmsfleet/config.yaml >"$root/DEBIAN/conffiles"
  cat >"$root/DEBIAN/control" <<CONTROL
Package: kmsfleet
Version: $version
Architecture: $arch
Maintainer: The kmsfleet authors <kmsfleet@kmsfleet.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $(deb_depends "$root"), systemd
Section: admin
Priority: optional
Homepage: https://kmsfleet.invalid/
Description: upgrades bao-kms-provider one control-plane node at a time
 kmsfleet automates the bao-kms-provider upgrade runbook: an agent on
 every control-plane node stages and verifies releases, runs doctor, swaps
 the provider and verifies it, while a coordinator elected among the agents
 lets only one node be disrupted at a time.
CONTROL
  dpkg-deb --root-owner-group -Zxz --build "$root" "$out/kmsfleet_${version}_${arch}.deb" >/dev/null
  echo "$out/kmsfleet_${version}_${arch}.deb"
}

build_rpm() {
  local root=$work/rpm
  stage_tree "$root" usr/share/doc/kmsfleet
  install -D -m0644 "$src/packaging/deb/copyright" "$root/usr/share/licenses/kmsfleet/copyright"
  rpmbuild --quiet -bb "$src/packaging/rpm/kmsfleet.spec" \
    --define "_topdir $work/rpmbuild" --define "stage $root" \
    --define "kmsfleet_version $version" --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm"
  ls "$out"/kmsfleet-"$version"-1.*.rpm
}

build_deb
build_rpm
