#!/usr/bin/env bash
# scripts/deps.sh -- install the Debian packages tandem builds and tests with.
# Idempotent: installs only what is missing, runs `apt-get update` at most once.
# Usage: scripts/deps.sh [--bench]   (--bench adds haproxy, nginx, wrk for bench/)
set -euo pipefail

pkgs=(build-essential pkg-config libuv1-dev libhiredis-dev node-llhttp libcurl4-openssl-dev
      libcjson-dev libinih-dev libcmocka-dev python3 python3-pytest python3-redis
      redis-tools redis-server etcd-server curl)
if [[ "${1:-}" == "--bench" ]]; then
    pkgs+=(haproxy nginx wrk)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps: all ${#pkgs[@]} packages present"
    exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts packaged servers on install; tests start their own on ephemeral ports.
for svc in redis-server etcd nginx haproxy; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
        $sudo systemctl stop "$svc" || true
    fi
done
echo "deps: done"
