#!/usr/bin/env bash
# Build a local, signed apt repository laid out like apt.postgresql.org, for testing the role's
# PGDG code path (key, deb822 source, pin) without reaching PGDG.
#
#   scripts/pgdg-repo.sh [SUITE] [MAJOR]      (default: bookworm 15)
#
# PostgreSQL 16 cannot be reached from the lab, so the repository holds Debian's own PostgreSQL
# packages for SUITE, re-published as "SUITE-pgdg" with Origin "apt.postgresql.org" and signed with
# a throwaway key made here. Output in .cache/pgdg-repo/:
#   repo/      the repository, key.asc (the public key) and fingerprint
#   tampered/  the same repository with one Packages checksum altered in InRelease, so its
#              signature no longer verifies
set -euo pipefail

suite=${1:-bookworm}
major=${2:-15}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cache=${LAB_CACHE_DIR:-$top/.cache}
out="$cache/pgdg-repo"
stamp="$out/.stamp"
want="$(sha256sum "$here/pgdg-repo.sh" | cut -c1-16)-$suite-$major"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$top/.config/containers.conf}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
rm -rf "$out"
mkdir -p "$out/repo/pool/main" "$out/gnupg" "$cache/apt-archives/$suite/partial"
chmod 0700 "$out/gnupg"
export GNUPGHOME="$out/gnupg"

# 1. Debian's packages for SUITE, fetched by a throwaway container of that suite.
podman run --rm \
  -v "$cache/apt-archives/$suite:/var/cache/apt/archives" \
  -v "$out/repo/pool/main:/out" \
  "localhost/agent-ui-pg-lab:$suite" \
  sh -c "apt-get update -qq && cd /out && apt-get download -qq \
         postgresql-$major postgresql-client-$major libpq5 postgresql-common postgresql-client-common"

# 2. A throwaway signing key (no passphrase: it signs a test fixture and nothing else).
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-gen-key "agent_ui.postgresql lab PGDG mirror <lab@localhost>" rsa3072 sign never
fpr=$(gpg --batch --with-colons --list-keys | awk -F: '/^fpr:/ {print $10; exit}')
gpg --batch --armor --export "$fpr" > "$out/repo/key.asc"
echo "$fpr" > "$out/repo/fingerprint"

# 3. Indexes, Release, and the two signatures apt looks for.
dist="dists/$suite-pgdg"
arch=$(dpkg --print-architecture)
mkdir -p "$out/repo/$dist/main/binary-$arch"
(cd "$out/repo" && dpkg-scanpackages --multiversion pool/main > "$dist/main/binary-$arch/Packages" 2>/dev/null)
gzip -9nk "$out/repo/$dist/main/binary-$arch/Packages"
(cd "$out/repo/$dist" && apt-ftparchive \
   -o APT::FTPArchive::Release::Origin=apt.postgresql.org \
   -o APT::FTPArchive::Release::Label="PostgreSQL for Debian/Ubuntu repository (lab mirror)" \
   -o APT::FTPArchive::Release::Suite="$suite-pgdg" \
   -o APT::FTPArchive::Release::Codename="$suite-pgdg" \
   -o APT::FTPArchive::Release::Architectures="$arch" \
   -o APT::FTPArchive::Release::Components=main \
   release . > Release)
gpg --batch --yes --local-user "$fpr" --clearsign -o "$out/repo/$dist/InRelease" "$out/repo/$dist/Release"
gpg --batch --yes --local-user "$fpr" --armor --detach-sign -o "$out/repo/$dist/Release.gpg" "$out/repo/$dist/Release"

# 4. The tampered twin: same key and pool, InRelease edited after signing.
mkdir -p "$out/tampered/$dist"
cp -a "$out/repo/key.asc" "$out/repo/fingerprint" "$out/tampered/"
cp -a "$out/repo/$dist/main" "$out/tampered/$dist/"
ln -s ../repo/pool "$out/tampered/pool"
sed '0,/^ [0-9a-f]\{64\} /s// 0000000000000000000000000000000000000000000000000000000000000000 /' \
  "$out/repo/$dist/InRelease" > "$out/tampered/$dist/InRelease"
cmp -s "$out/repo/$dist/InRelease" "$out/tampered/$dist/InRelease" && { echo "tampering failed" >&2; exit 1; }

chmod -R a+rX "$out/repo" "$out/tampered"
echo "$want" > "$stamp"
echo "pgdg lab repository: $out/repo (key $fpr)"
