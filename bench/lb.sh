#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/lb.sh -- HTTP proxy throughput: direct vs tandem lb vs HAProxy vs nginx, same backends.
#
# Two fast single-process nginx backends; wrk (-t1 -c50 --latency, keep-alive) against each
# target in turn, the run order rotating every round; medians over rounds. Reports req/s, ratios
# (vs direct, vs HAProxy), p50/p99 latency, and the proxy's CPU per request (utime+stime of the
# proxy's process(es) from /proc/PID/stat, before and after each run).
# Everything on 127.0.0.1, ephemeral ports, configs in a temp dir, processes ended by PID.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: bench/lb.sh [--duration 10s] [--rounds 3] [--connections 50] [--warmup 1s]
                   [--only direct,tandem,haproxy,nginx] [--out FILE] [--keep]

  --duration D     wrk run length per target and round (default 10s)
  --rounds N       rounds; each round runs every target once, order rotated (default 3)
  --connections N  wrk connections (default 50; one wrk thread)
  --warmup D       one untimed wrk run per target before round 1 (default 1s; 0 = none)
  --only LIST      targets to run, comma separated (default all four)
  --out FILE       also write the tables to FILE
  --keep           keep the temp dir (configs, logs, wrk outputs)
TANDEM=path overrides the tandem binary (default build/tandem). Needs haproxy, nginx, wrk, curl
(scripts/deps.sh --bench installs them).
EOF
}

duration=10s rounds=3 conns=50 warmup=1s only=direct,tandem,haproxy,nginx out=""
while (($#)); do
    case $1 in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || bench_die "--rounds wants a positive integer"

bench_need_tools haproxy nginx wrk curl
HAPROXY=$(bench_tool haproxy)
NGINX=$(bench_tool nginx)

targets=()
IFS=, read -r -a wanted <<<"$only"
for t in "${wanted[@]}"; do
    case $t in
    direct | haproxy | nginx) targets+=("$t") ;;
    tandem)
        if "$TANDEM" lb --help >/dev/null 2>&1; then
            targets+=("$t")
        else
            bench_log "SKIP tandem: '$TANDEM lb --help' failed (tandem lb not built yet?)"
        fi
        ;;
    *) bench_die "unknown target '$t' (direct, tandem, haproxy, nginx)" ;;
    esac
done
((${#targets[@]})) || bench_die "nothing to run"

loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
bench_init tandem-lb-bench
read -r P_A P_B P_TANDEM P_HAPROXY P_NGINX <<<"$(bench_ports 5)"
declare -A port=([direct]=$P_A [tandem]=$P_TANDEM [haproxy]=$P_HAPROXY [nginx]=$P_NGINX)

# --- backends: single-process nginx, bodies "A\n" / "B\n" (same size; tells them apart) --------
# shellcheck disable=SC2046
bench_start be-a $(bench_nginx_backend "$BENCH_TMP" be-a "$P_A" A)
# shellcheck disable=SC2046
bench_start be-b $(bench_nginx_backend "$BENCH_TMP" be-b "$P_B" B)
bench_wait_http "http://127.0.0.1:$P_A/" 10 "" be-a || { bench_alive be-a; bench_die "backend a did not start"; }
bench_wait_http "http://127.0.0.1:$P_B/" 10 "" be-b || { bench_alive be-b; bench_die "backend b did not start"; }

# --- proxies -----------------------------------------------------------------------------------
start_tandem() {
    bench_start tandem "$TANDEM" lb --listen "127.0.0.1:$P_TANDEM" --protocol http \
        --mode active-active --server "a=127.0.0.1:$P_A" --server "b=127.0.0.1:$P_B" \
        --check http:/ --inter 1s --fall 3 --rise 2
    echo "$TANDEM lb --listen 127.0.0.1:$P_TANDEM --protocol http --mode active-active" \
        "--server a=127.0.0.1:$P_A --server b=127.0.0.1:$P_B --check http:/ --inter 1s --fall 3 --rise 2" \
        >"$BENCH_TMP/tandem.cmd"
}

start_haproxy() {
    cat >"$BENCH_TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$P_HAPROXY
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /
    server a 127.0.0.1:$P_A check
    server b 127.0.0.1:$P_B check
EOF
    "$HAPROXY" -c -q -f "$BENCH_TMP/haproxy.cfg" || bench_die "haproxy config check failed"
    bench_start haproxy "$HAPROXY" -db -f "$BENCH_TMP/haproxy.cfg"
}

start_nginx() {
    local d=$BENCH_TMP/nginx
    mkdir -p "$d/logs"
    # keepalive_requests raised on both sides so no proxy closes keep-alive connections every
    # 1000 requests (HAProxy and tandem have no such limit; nginx's default is 1000).
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
error_log $d/logs/error.log warn;
pid $d/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream be {
        server 127.0.0.1:$P_A;
        server 127.0.0.1:$P_B;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
        }
    }
}
EOF
    bench_start nginx "$NGINX" -p "$d/" -e "$d/logs/error.log" -c "$d/nginx.conf"
}

for t in "${targets[@]}"; do
    [[ $t == direct ]] && continue
    "start_$t"
    # Ready = both backends seen through the proxy (active-active round-robin).
    if ! bench_wait_http "http://127.0.0.1:${port[$t]}/" 20 '^A$' "$t" ||
        ! bench_wait_http "http://127.0.0.1:${port[$t]}/" 20 '^B$' "$t"; then
        bench_alive "$t" || true
        bench_die "$t did not serve both backends within 20 s"
    fi
    bench_log "$t ready on 127.0.0.1:${port[$t]}"
done

# CPU of a target: the proxy process(es); the nginx master's worker is included via children.
proxy_pid() {
    case $1 in direct) echo "" ;; *) bench_pid "$1" ;; esac
}

raw=$BENCH_TMP/raw.tsv
printf 'round\torder\ttarget\trps\trequests\tseconds\tp50_ms\tp99_ms\terrors\tcpu_ticks\tcpu_pct\tcpu_us_req\n' >"$raw"
hz=$(getconf CLK_TCK)

run_wrk() { # TARGET DURATION OUTFILE
    wrk -t1 -c"$conns" -d"$2" --latency "http://127.0.0.1:${port[$1]}/" >"$3" 2>&1
}

if [[ $warmup != 0 && $warmup != 0s ]]; then
    for t in "${targets[@]}"; do
        bench_log "warm-up $t ($warmup)"
        run_wrk "$t" "$warmup" "$BENCH_TMP/warmup-$t.txt"
    done
fi

n=${#targets[@]}
for ((r = 1; r <= rounds; r++)); do
    for ((i = 0; i < n; i++)); do
        t=${targets[$(((i + r - 1) % n))]}
        pid=$(proxy_pid "$t")
        if [[ -n $pid ]]; then
            bench_alive "$t" || bench_die "$t died"
            c0=$(bench_cpu_ticks "$pid")
        fi
        wrk_out=$BENCH_TMP/wrk-r$r-$t.txt
        run_wrk "$t" "$duration" "$wrk_out"
        cpu_ticks="" cpu_pct="" cpu_us=""
        read -r rps reqs secs p50 p99 errs <<<"$("$PY" "$BENCH_DIR/report.py" wrk "$wrk_out")"
        if [[ -n $pid ]]; then
            c1=$(bench_cpu_ticks "$pid")
            cpu_ticks=$((c1 - c0))
            read -r cpu_pct cpu_us <<<"$(awk -v t="$cpu_ticks" -v hz="$hz" -v s="$secs" -v n="$reqs" \
                'BEGIN { printf "%.1f %.3f", 100 * t / hz / s, (n ? 1e6 * t / hz / n : 0) }')"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$((i + 1))" "$t" "$rps" \
            "$reqs" "$secs" "$p50" "$p99" "$errs" "$cpu_ticks" "$cpu_pct" "$cpu_us" >>"$raw"
        bench_log "round $r/$rounds $t: $rps req/s p50 ${p50}ms p99 ${p99}ms errors $errs" \
            "${cpu_us:+cpu ${cpu_us}us/req (${cpu_pct}% of a core)}"
    done
done

{
    echo "## bench/lb.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Command: \`bench/lb.sh --duration $duration --rounds $rounds --connections $conns --only $(IFS=,; echo "${targets[*]}")\`"
    echo "Machine load average (1/5/15 min) at start: $loadavg_start; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "tandem: $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown) ($TANDEM)"
    echo "Machine: $(nproc) cores, $(uname -r); $("$HAPROXY" -v 2>/dev/null | head -1 | cut -d' ' -f1-3);" \
        "$("$NGINX" -v 2>&1 | cut -d' ' -f3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "Load: \`wrk -t1 -c$conns -d$duration --latency\`; CPU ticks are ${hz}/s."
    [[ -f $BENCH_TMP/tandem.cmd ]] && echo "tandem: \`$(sed "s|$REPO_DIR/||" "$BENCH_TMP/tandem.cmd")\`"
    echo
    "$PY" "$BENCH_DIR/report.py" lb-table "$raw"
} | if [[ -n $out ]]; then tee "$out"; else cat; fi
