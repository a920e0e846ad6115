#!/usr/bin/env bash
# Installs Debian's nginx-light when nginx is missing, without letting the
# package start a system nginx (policy-rc.d answers "not now" during the
# install). Used by conformance/test_two_instances.py, which runs its own
# nginx in the foreground (`nginx -c CONF -p DIR`, `daemon off;`).
# Needs root (apt-get).
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    exit 0
fi
if [[ "$(id -u)" != "0" ]]; then
    echo "install_nginx.sh: nginx missing and not root (apt-get install nginx-light)" >&2
    exit 1
fi
policy=/usr/sbin/policy-rc.d
own_policy=
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
rc=0
{
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
} || rc=$?
[[ -z $own_policy ]] || rm -f -- "$policy"
[[ $rc -eq 0 ]] || { echo "install_nginx.sh: apt-get install nginx-light failed ($rc)" >&2; exit "$rc"; }
test -x /usr/sbin/nginx
