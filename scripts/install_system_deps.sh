#!/bin/sh
# System packages the tests need that pip cannot install. Idempotent: a package whose command is already
# there is skipped. Add a package as one "binary package" line below.
set -eu

PACKAGES="
/usr/bin/chromium chromium
/usr/lib/postgresql/15/bin/initdb postgresql
"

missing=""
while read -r binary package; do
    [ -n "$binary" ] || continue
    [ -x "$binary" ] || missing="$missing $package"
done <<LIST
$PACKAGES
LIST

if [ -z "$missing" ]; then
    echo "system dependencies already installed"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086  # one word per package
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
