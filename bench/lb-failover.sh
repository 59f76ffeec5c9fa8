#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/lb-failover.sh -- the kill drill: what a client sees when a backend dies or hangs.
#
# 8 keep-alive client connections (`tandem load`) through a proxy to two backends a and b for
# 15 s; at 3 s backend a is killed (kill -9) or hung (SIGSTOP), at 12 s it is restarted (or
# SIGCONT). Per row: failed requests, the longest gap without a successful response, and the
# share of traffic the backup (b) served before the fault. Rows: HAProxy with default and tuned
# checks, nginx with passive checks, tandem lb; each active-active and active-passive, each with
# a dead and a hung backend. Fresh processes for every run; medians over rounds.
# Everything on 127.0.0.1, ephemeral ports, configs in a temp dir, processes ended by PID.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: bench/lb-failover.sh [--rounds 3] [--only haproxy-default,haproxy-tuned,nginx,tandem,tandem-stall]
                            [--modes aa,ap] [--faults kill,stop] [--backend auto|app|nginx]
                            [--stall-timeout 20ms] [--out FILE] [--keep]

  --rounds N     runs per row (default 3; each run is 15 s plus start-up); --rounds 1 is quick
  --only LIST    proxy configs (default all five; tandem-stall = tandem lb with
                 --stall-timeout, run for the stop fault only)
  --stall-timeout D  tandem-stall's --stall-timeout (default 20ms)
  --modes LIST   aa = active-active, ap = active-passive (default both)
  --faults LIST  kill = kill -9 backend a, stop = SIGSTOP it (a hung server) (default both)
  --backend B    app = two \`tandem app\`, nginx = two nginx adding X-Server (default auto:
                 tandem app when it is built)
  --out FILE     also write the tables to FILE
  --keep         keep the temp dir (configs, logs, client JSON)
Timing: load 15 s, fault at 3 s, restore at 12 s; client: tandem load --connections 8
--timeout 1s --timeline 100ms. For the stop fault each proxy's server timeout is 1 s.
TANDEM=path overrides the tandem binary (default build/tandem). Needs haproxy, nginx, curl
(scripts/deps.sh --bench).
EOF
}

rounds=3 only=haproxy-default,haproxy-tuned,nginx,tandem,tandem-stall modes=aa,ap faults=kill,stop
backend=auto out="" stall=20ms
DURATION_S=15 FAULT_AT_S=3 RESTORE_AT_S=12 CONNS=8 CLIENT_TIMEOUT=1s
while (($#)); do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --faults) faults=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --stall-timeout) stall=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || bench_die "--rounds wants a positive integer"

bench_need_tools haproxy nginx curl
HAPROXY=$(bench_tool haproxy)
NGINX=$(bench_tool nginx)

# The client: tandem load (8 keep-alive connections, one request at a time each).
"$TANDEM" load --help >/dev/null 2>&1 ||
    bench_die "'$TANDEM load --help' failed: the drill's client, tandem load, is not built (make)"
load_cmd=("$TANDEM" load)

case $backend in
auto) if "$TANDEM" app --help >/dev/null 2>&1; then backend=app; else backend=nginx; fi ;;
app | nginx) ;;
*) bench_die "--backend wants auto, app or nginx" ;;
esac
if [[ $backend == app ]]; then
    "$TANDEM" app --help >/dev/null 2>&1 || bench_die "'$TANDEM app --help' failed"
    REQ_PATH=/whoami CHECK_PATH=/healthz
else
    REQ_PATH=/whoami CHECK_PATH=/
fi

configs=()
IFS=, read -r -a wanted <<<"$only"
for c in "${wanted[@]}"; do
    case $c in
    haproxy-default | haproxy-tuned | nginx) configs+=("$c") ;;
    tandem | tandem-stall)
        if "$TANDEM" lb --help >/dev/null 2>&1; then
            configs+=("$c")
        else
            bench_log "SKIP tandem: '$TANDEM lb --help' failed (tandem lb not built yet?)"
        fi
        ;;
    *) bench_die "unknown config '$c' (haproxy-default, haproxy-tuned, nginx, tandem, tandem-stall)" ;;
    esac
done
IFS=, read -r -a mode_list <<<"$modes"
IFS=, read -r -a fault_list <<<"$faults"
for m in "${mode_list[@]}"; do [[ $m == aa || $m == ap ]] || bench_die "unknown mode '$m'"; done
for f in "${fault_list[@]}"; do [[ $f == kill || $f == stop ]] || bench_die "unknown fault '$f'"; done
((${#configs[@]})) || bench_die "nothing to run"

loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
bench_init tandem-lb-failover

# --- backends ------------------------------------------------------------------------------------
# start_backend NAME PORT -- (re)start backend NAME (a or b) on PORT; waits until it answers.
start_backend() {
    local name=$1 port=$2
    if [[ $backend == app ]]; then
        bench_start "be-$name" "$TANDEM" app --listen "127.0.0.1:$port" --name "$name"
    else
        # shellcheck disable=SC2046
        bench_start "be-$name" $(bench_nginx_backend "$RUN_DIR" "be-$name" "$port" "$name" "$name")
    fi
    bench_wait_http "http://127.0.0.1:$port$REQ_PATH" 10 "" "be-$name" ||
        { bench_alive "be-$name" || true; bench_die "backend $name did not start"; }
}

# --- proxies: each writes its config into $RUN_DIR and starts as "proxy" -------------------------
# Arguments: MODE (aa|ap) FAULT (kill|stop). Ports: $P_A $P_B $P_PROXY.
start_haproxy() { # CHECKS MODE FAULT; CHECKS = default|tuned
    local checks=$1 mode=$2 fault=$3 srv tuned="" backup=""
    if [[ $checks == tuned ]]; then
        srv="inter 100ms fall 2 rise 2"
        tuned=$'    retries 3\n    option redispatch'
    else
        srv="inter 2s fall 3 rise 2"
    fi
    [[ $mode == ap ]] && backup=" backup"
    cat >"$RUN_DIR/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server $([[ $fault == stop ]] && echo 1s || echo 30s)
$tuned
frontend fe
    bind 127.0.0.1:$P_PROXY
    default_backend be
backend be
    balance roundrobin
    option httpchk GET $CHECK_PATH
    default-server $srv
    server a 127.0.0.1:$P_A check
    server b 127.0.0.1:$P_B check$backup
EOF
    "$HAPROXY" -c -q -f "$RUN_DIR/haproxy.cfg" || bench_die "haproxy config check failed"
    bench_start proxy "$HAPROXY" -db -f "$RUN_DIR/haproxy.cfg"
}

start_nginx() { # MODE FAULT
    local mode=$1 fault=$2 d=$RUN_DIR/nginx backup=""
    mkdir -p "$d/logs"
    [[ $mode == ap ]] && backup=" backup"
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
        server 127.0.0.1:$P_A max_fails=1 fail_timeout=10s;
        server 127.0.0.1:$P_B max_fails=1 fail_timeout=10s$backup;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$P_PROXY;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
            proxy_read_timeout $([[ $fault == stop ]] && echo 1s || echo 60s);
            proxy_send_timeout $([[ $fault == stop ]] && echo 1s || echo 60s);
        }
    }
}
EOF
    bench_start proxy "$NGINX" -p "$d/" -e "$d/logs/error.log" -c "$d/nginx.conf"
}

start_tandem() { # MODE FAULT [STALL_TIMEOUT]
    local mode=$1 fault=$2 stall=${3:-} args
    args=(lb --listen "127.0.0.1:$P_PROXY" --protocol http
        --mode "$([[ $mode == ap ]] && echo active-passive || echo active-active)"
        --server "a=127.0.0.1:$P_A" --server "b=127.0.0.1:$P_B"
        --check "http:$CHECK_PATH" --inter 100ms --fall 2 --rise 2 --failback auto)
    [[ $fault == stop ]] && args+=(--timeout-server 1s)
    [[ -n $stall ]] && args+=(--stall-timeout "$stall")
    echo "tandem ${args[*]}" >"$RUN_DIR/tandem.cmd"
    bench_start proxy "$TANDEM" "${args[@]}"
}

start_proxy() { # CONFIG MODE FAULT
    case $1 in
    haproxy-default) start_haproxy default "$2" "$3" ;;
    haproxy-tuned) start_haproxy tuned "$2" "$3" ;;
    nginx) start_nginx "$2" "$3" ;;
    tandem) start_tandem "$2" "$3" ;;
    tandem-stall) start_tandem "$2" "$3" "$stall" ;;
    esac
    # Ready: active-active has served from both; active-passive has served from a.
    local url="http://127.0.0.1:$P_PROXY$REQ_PATH"
    if ! bench_wait_http "$url" 20 '^[Xx]-[Ss]erver: a' proxy ||
        { [[ $2 == aa ]] && ! bench_wait_http "$url" 20 '^[Xx]-[Ss]erver: b' proxy; }; then
        bench_alive proxy || true
        bench_die "$1 ($2) did not become ready within 20 s"
    fi
}

# sleep_until T0_NS SECONDS -- sleep until SECONDS after the monotonic-ish start T0_NS.
sleep_until() {
    local left
    left=$(($1 + $2 * 1000000000 - $(date +%s%N)))
    ((left > 0)) && sleep "$(awk -v n="$left" 'BEGIN { printf "%.3f", n / 1e9 }')"
    return 0
}

# one_run CONFIG MODE FAULT ROUND -- one drill; appends a row to $raw.
one_run() {
    local config=$1 mode=$2 fault=$3 round=$4 t0 json lpid row proxy_state
    RUN_DIR=$BENCH_TMP/$config-$mode-$fault-$round
    mkdir -p "$RUN_DIR"
    BENCH_LOGDIR=$RUN_DIR
    read -r P_A P_B P_PROXY <<<"$(bench_ports 3)"
    start_backend a "$P_A"
    start_backend b "$P_B"
    start_proxy "$config" "$mode" "$fault"

    json=$RUN_DIR/load.json
    t0=$(date +%s%N)
    "${load_cmd[@]}" --url "http://127.0.0.1:$P_PROXY$REQ_PATH" --connections "$CONNS" \
        --duration "${DURATION_S}s" --timeout "$CLIENT_TIMEOUT" --timeline 100ms --json \
        >"$json" 2>"$RUN_DIR/load.log" &
    lpid=$!
    BENCH_PIDS[load]=$lpid

    sleep_until "$t0" "$FAULT_AT_S"
    # Mark first, then act: tandem load splits its report into phases at each SIGUSR1, so the
    # first phase ends just before the fault (before-fault shares hold no post-fault response);
    # the 20 ms let the client's loop take the mark before the fault can change anything.
    kill -USR1 "$lpid"
    sleep 0.02
    if [[ $fault == kill ]]; then
        kill -KILL "$(bench_pid be-a)"
        { wait "$(bench_pid be-a)"; } 2>/dev/null || true   # no "Killed" job notice
        unset "BENCH_PIDS[be-a]"
    else
        kill -STOP "$(bench_pid be-a)"
    fi
    echo "fault $fault at $((($(date +%s%N) - t0) / 1000000)) ms after the client started" >"$RUN_DIR/faults.txt"
    sleep_until "$t0" "$RESTORE_AT_S"
    kill -USR1 "$lpid"
    if [[ $fault == kill ]]; then
        start_backend a "$P_A"
    else
        kill -CONT "$(bench_pid be-a)"
    fi
    echo "restore at $((($(date +%s%N) - t0) / 1000000)) ms" >>"$RUN_DIR/faults.txt"

    wait "$lpid" || bench_die "load client failed (exit $?): $(tail -n 5 "$RUN_DIR/load.log")"
    unset "BENCH_PIDS[load]"
    # A proxy that died during the run is part of the result, not a reason to stop.
    proxy_state=alive
    if ! kill -0 "$(bench_pid proxy)" 2>/dev/null; then
        local rc=0
        wait "$(bench_pid proxy)" 2>/dev/null || rc=$?
        if ((rc > 128)); then proxy_state="died: SIG$(kill -l $((rc - 128)))"; else proxy_state="exited: $rc"; fi
        bench_log "$config $mode $fault run $round: the proxy $proxy_state (log: $RUN_DIR/proxy.log)"
    fi
    bench_stop proxy
    bench_stop be-a
    bench_stop be-b

    row=$("$PY" "$BENCH_DIR/report.py" load-row "$json" "$((FAULT_AT_S * 1000))" "$((DURATION_S * 1000))")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$mode" "$fault" "$round" "$row" "$proxy_state" >>"$raw"
    bench_log "$config $mode $fault run $round: $(awk -F'\t' '{ printf "requests %s failed %s gap %s ms backup-share %s%%", $1, $3, $9, $10 }' <<<"$row")"
}

raw=$BENCH_TMP/raw.tsv
printf 'config\tmode\tfault\trun\trequests\tok\tfailed\te_connect\te_reset\te_timeout\te_5xx\te_protocol\tgap_ms\tbackup_share\ta_share_end\tproxy\n' >"$raw"

for ((r = 1; r <= rounds; r++)); do
    for f in "${fault_list[@]}"; do
        for c in "${configs[@]}"; do
            [[ $c == tandem-stall && $f == kill ]] && continue
            for m in "${mode_list[@]}"; do
                one_run "$c" "$m" "$f" "$r"
            done
        done
    done
done

{
    echo "## bench/lb-failover.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Command: \`bench/lb-failover.sh --rounds $rounds --only $(IFS=,; echo "${configs[*]}") --modes $modes --faults $faults --backend $backend --stall-timeout $stall\`"
    echo "Machine load average (1/5/15 min) at start: $loadavg_start; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "tandem: $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown) ($TANDEM)"
    echo "Machine: $(nproc) cores, $(uname -r); $("$HAPROXY" -v 2>/dev/null | head -1 | cut -d' ' -f1-3);" \
        "$("$NGINX" -v 2>&1 | cut -d' ' -f3)"
    echo "Client: \`${load_cmd[*]##*/} --connections $CONNS --duration ${DURATION_S}s --timeout $CLIENT_TIMEOUT --timeline 100ms --json\`;" \
        "fault at ${FAULT_AT_S}s, restore at ${RESTORE_AT_S}s; backends: $backend ($REQ_PATH, checks on $CHECK_PATH)."
    echo
    "$PY" "$BENCH_DIR/report.py" failover-table "$raw"
} | if [[ -n $out ]]; then tee "$out"; else cat; fi
