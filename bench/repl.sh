#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/repl.sh -- a primary with one replica: tandem db against Redis 7, side by side.
#
# Parts (each on a fresh primary + replica pair per kind and round; kinds alternate first):
#   async   write throughput with the replica attached: redis-benchmark -t set,incr -c 50
#           -n REQUESTS at -P 1 and -P 16 against the primary
#   sync    synchronous writes, 50 clients (bench/syncbench.c, one write in flight per client):
#           Redis: SET + WAIT 1 0 per write (sent together, a write counts when WAIT says 1);
#           tandem: plain SET on a primary started with --sync-replicas 1
#   lag     replication lag under load: redis-benchmark -t set -c 50 -P p -r 1000000 -d 32 keeps
#           the primary busy while bench/repl_probe.py writes a probe key 50 times a second and
#           polls the replica until it shows it (lag = replica shows it - primary acked it).
#           The load runs as fast as each server goes, so a slower primary sees a lighter
#           replication stream: compare lag only next to the async write rates (or lower the
#           load with --lag-clients so that both sustain it)
#   resync  full resync: the primary holds KEYS keys (16-byte keys, 32-byte values), an empty
#           replica is sent REPLICAOF; time to master_link_status:up and to DBSIZE == KEYS
#           (round 1 then compares every key on both sides)
# Before the rounds, the sync driver's own ceiling is measured against a lone redis-server
# (PING and plain SET, next to redis-benchmark's SET at -P 1 on the same server).
#
# Persistence (--persist): everysec (default) = redis --appendonly yes --appendfsync everysec,
# tandem --fsync everysec; none = redis --appendonly no, tandem --in-memory. Both kinds: save "",
# and Redis with --repl-diskless-sync-delay 0 (its default, 5 s, only delays the start of a
# full sync; ANCHORS.md measured 5.66 s for 1M keys with it, ~0.66 s of it transfer).
# The tandem rows run only when `tandem db --help` mentions --replicaof (tandem_* below).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: bench/repl.sh [--rounds 3] [--parts async,sync,lag,resync] [--only redis,tandem]
                     [--requests 200000] [--clients 50] [--pipelines 1,16]
                     [--sync-seconds 10] [--lag-seconds 10] [--lag-pipelines 1,16] [--lag-clients 50]
                     [--keys 1000000] [--persist everysec|none] [--out FILE] [--keep]
REDIS_SERVER=path and TANDEM=path override the binaries.
EOF
}

rounds=3 parts=async,sync,lag,resync only=redis,tandem requests=200000 clients=50
pipelines=1,16 sync_seconds=10 lag_seconds=10 lag_pipelines=1,16 lag_clients=50 keys=1000000
persist=everysec
out=""
while (($#)); do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --pipelines) pipelines=$2; shift 2 ;;
    --sync-seconds) sync_seconds=$2; shift 2 ;;
    --lag-seconds) lag_seconds=$2; shift 2 ;;
    --lag-pipelines) lag_pipelines=$2; shift 2 ;;
    --lag-clients) lag_clients=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --persist) persist=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; sed -n '3,26p' "$0"; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || bench_die "--rounds wants a positive integer"
[[ $persist == everysec || $persist == none ]] || bench_die "--persist wants everysec or none"
IFS=, read -r -a part_list <<<"$parts"
IFS=, read -r -a pipe_list <<<"$pipelines"
IFS=, read -r -a lagp_list <<<"$lag_pipelines"
for p in "${part_list[@]}"; do
    [[ $p =~ ^(async|sync|lag|resync)$ ]] || bench_die "unknown part '$p' (async, sync, lag, resync)"
done

REDIS=${REDIS_SERVER:-/usr/bin/redis-server}
bench_need_tools redis-cli redis-benchmark cc pkg-config
[[ -x $REDIS ]] || bench_die "no redis-server at $REDIS"
"$PY" -c 'import redis' 2>/dev/null || bench_die "$PY has no redis module (python3-redis)"

kinds=()
for k in ${only//,/ }; do
    case $k in
    redis) kinds+=(redis) ;;
    tandem)
        if [[ -x $TANDEM ]] && "$TANDEM" db --help 2>&1 | grep -q -- '--replicaof'; then
            kinds+=(tandem)
        else
            bench_log "tandem: not available in this build ('$TANDEM db --help' has no --replicaof)"
        fi
        ;;
    *) bench_die "unknown kind '$k' (redis, tandem)" ;;
    esac
done
((${#kinds[@]})) || bench_die "nothing to run"

uptime_start=$(uptime)
bench_init tandem-repl
raw=$BENCH_TMP/raw.tsv
printf 'part\ttest\tkind\tround\tv1\tv2\tv3\tv4\n' >"$raw"
SYNCBENCH=$BENCH_TMP/syncbench
# shellcheck disable=SC2046
cc -O2 -Wall -o "$SYNCBENCH" "$BENCH_DIR/syncbench.c" $(pkg-config --cflags --libs hiredis) ||
    bench_die "could not build bench/syncbench.c (libhiredis-dev)"

# --- servers -------------------------------------------------------------------------------------
# Each start_* sets P_PRI and P_REP and records the processes as "pri" and "rep".

redis_args() { # PORT DIR
    local a=(--port "$1" --bind 127.0.0.1 --dir "$2" --save "" --daemonize no
        --repl-diskless-sync-delay 0)
    if [[ $persist == none ]]; then a+=(--appendonly no)
    else a+=(--appendonly yes --appendfsync everysec); fi
    printf '%s\n' "${a[@]}"
}

# start_pair KIND SYNC ATTACH -- primary and replica; SYNC=1: the primary's sync mode (tandem
# --sync-replicas 1; Redis has none, its clients send WAIT); ATTACH=0: the replica starts empty
# and unattached (for the resync part).
start_pair() {
    local kind=$1 sync=$2 attach=$3 d=$RUN_DIR a
    read -r P_PRI P_REP <<<"$(bench_ports 2)"
    mkdir -p "$d/pri" "$d/rep"
    if [[ $kind == redis ]]; then
        mapfile -t a < <(redis_args "$P_PRI" "$d/pri")
        bench_start pri "$REDIS" "${a[@]}"
        mapfile -t a < <(redis_args "$P_REP" "$d/rep")
        ((attach)) && a+=(--replicaof 127.0.0.1 "$P_PRI")
        bench_start rep "$REDIS" "${a[@]}"
    else
        tandem_start_pair "$sync" "$attach"
    fi
    bench_wait_redis "$P_PRI" 10 pri || bench_die "$kind primary did not start"
    bench_wait_redis "$P_REP" 10 rep || bench_die "$kind replica did not start"
    ((attach)) || return 0
    local deadline=$(($(date +%s) + 30))
    until [[ $(bench_redis_field "$P_REP" replication master_link_status) == up ]] &&
        bench_redis_info "$P_PRI" replication | grep -q 'state=online'; do
        (($(date +%s) < deadline)) || bench_die "$kind replica not in sync within 30 s (logs: $RUN_DIR)"
        sleep 0.05
    done
}

stop_pair() { bench_stop pri; bench_stop rep; }

# --- tandem (the lead completes/adjusts this part) -------------------------------------------------
# Expected (issue 4): `tandem db --replicaof HOST:PORT`, `--sync-replicas N`, REPLICAOF host port
# at runtime, INFO replication with master_link_status (replica) and slaveN:...state=online
# (primary) as Redis prints them. Adjust the flags here if they differ.
tandem_args() { # PORT DIR
    local a=(db --listen "127.0.0.1:$1" --dir "$2")
    if [[ $persist == none ]]; then a+=(--in-memory yes)
    else a+=(--fsync everysec); fi
    printf '%s\n' "${a[@]}"
}

tandem_start_pair() { # SYNC ATTACH
    local a
    mapfile -t a < <(tandem_args "$P_PRI" "$RUN_DIR/pri")
    (($1)) && a+=(--sync-replicas 1)
    bench_start pri "$TANDEM" "${a[@]}"
    mapfile -t a < <(tandem_args "$P_REP" "$RUN_DIR/rep")
    (($2)) && a+=(--replicaof "127.0.0.1:$P_PRI")
    bench_start rep "$TANDEM" "${a[@]}"
}

# --- the parts -----------------------------------------------------------------------------------
record() { # PART TEST KIND ROUND V1 [V2 V3 V4]
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" "${7:-}" "${8:-}" >>"$raw"
}

# rb_rps PORT ARGS... -- requests per second from one redis-benchmark -q run.
rb_rps() {
    local port=$1
    shift
    redis-benchmark -p "$port" -q "$@" 2>/dev/null | tr '\r' '\n' | grep 'requests per second' |
        tail -n 1 | sed -E 's/^[^:]*: ([0-9.]+) requests per second.*/\1/'
}

part_async() { # KIND ROUND
    start_pair "$1" 0 1
    local p t rps
    for p in "${pipe_list[@]}"; do
        for t in set incr; do
            rps=$(rb_rps "$P_PRI" -t "$t" -c "$clients" -n "$requests" -P "$p")
            [[ -n $rps ]] || bench_die "redis-benchmark $t -P $p against $1 gave no result"
            record async "${t^^} -P $p" "$1" "$2" "$rps"
            bench_log "round $2 $1 async ${t^^} -P $p: $rps ops/s"
        done
    done
    bench_alive rep || bench_die "$1 replica died during the async part"
    stop_pair
}

syncbench_line() { # PORT MODE -> "rps p50_us p99_us errors short"
    local line
    line=$("$SYNCBENCH" --port "$1" --clients "$clients" --duration "$sync_seconds" --mode "$2" \
        --wait 1 --wait-timeout 0 2>>"$RUN_DIR/syncbench.log") ||
        bench_die "syncbench failed: $(tail -n 3 "$RUN_DIR/syncbench.log")"
    sed -E 's/.*rps=([0-9]+) p50_us=([0-9]+) p99_us=([0-9]+) errors=([0-9]+) short=([0-9]+).*/\1 \2 \3 \4 \5/' <<<"$line"
}

part_sync() { # KIND ROUND
    start_pair "$1" 1 1
    local mode=set-wait rps p50 p99 err short
    [[ $1 == tandem ]] && mode=set
    read -r rps p50 p99 err short <<<"$(syncbench_line "$P_PRI" "$mode")"
    record sync "$clients clients" "$1" "$2" "$rps" "$p50" "$p99" "$((err + short))"
    bench_log "round $2 $1 sync ($mode): $rps writes/s, p50 $p50 µs, p99 $p99 µs, errors+short $((err + short))"
    stop_pair
}

part_lag() { # KIND ROUND
    start_pair "$1" 0 1
    local p res n p50 p99 mx
    for p in "${lagp_list[@]}"; do
        bench_start load redis-benchmark -p "$P_PRI" -t set -c "$lag_clients" -P "$p" -r 1000000 -d 32 \
            -n 2000000000 -q
        sleep 1
        res=$("$PY" "$BENCH_DIR/repl_probe.py" lag "$P_PRI" "$P_REP" "$lag_seconds") ||
            bench_die "lag probe failed"
        bench_alive load || bench_die "redis-benchmark (load) stopped during the lag probe"
        bench_stop load
        read -r n p50 p99 mx <<<"$res"
        record lag "SET load -c $lag_clients -P $p" "$1" "$2" "$p50" "$p99" "$mx" "$n"
        bench_log "round $2 $1 lag under SET -P $p: p50 $p50 ms, p99 $p99 ms, max $mx ms ($n samples)"
    done
    stop_pair
}

part_resync() { # KIND ROUND
    start_pair "$1" 0 0
    local fill res verify="" up all
    fill=$("$PY" "$BENCH_DIR/repl_probe.py" fill "$P_PRI" "$keys") || bench_die "fill failed"
    (($2 == 1)) && verify=--verify
    res=$("$PY" "$BENCH_DIR/repl_probe.py" resync "$P_PRI" "$P_REP" "$keys" $verify) ||
        bench_die "$1 resync failed (logs: $RUN_DIR)"
    read -r up all <<<"$res"
    record resync "$keys keys" "$1" "$2" "$up" "$all" "$([[ -n $verify ]] && echo verified)"
    bench_log "round $2 $1 resync of $keys keys: link up ${up} s, all keys ${all} s (fill took ${fill} s)${verify:+, every key compared}"
    stop_pair
}

# --- the driver's ceiling ----------------------------------------------------------------------------
RUN_DIR=$BENCH_TMP/ceiling
BENCH_LOGDIR=$RUN_DIR
mkdir -p "$RUN_DIR/pri"
read -r P_CEIL <<<"$(bench_ports 1)"
mapfile -t a < <(redis_args "$P_CEIL" "$RUN_DIR/pri")
bench_start ceil "$REDIS" "${a[@]}"
bench_wait_redis "$P_CEIL" 10 ceil || bench_die "redis-server did not start"
read -r c_ping _ <<<"$(syncbench_line "$P_CEIL" ping)"
read -r c_set _ <<<"$(syncbench_line "$P_CEIL" set)"
c_rb=$(rb_rps "$P_CEIL" -t set -c "$clients" -n "$requests" -P 1)
bench_stop ceil
bench_log "driver ceiling: syncbench PING $c_ping/s, SET $c_set/s; redis-benchmark SET -P 1 $c_rb/s (lone redis-server, $clients clients)"

# --- rounds --------------------------------------------------------------------------------------
for ((round = 1; round <= rounds; round++)); do
    i=0
    for part in "${part_list[@]}"; do
        order=("${kinds[@]}")
        if ((${#kinds[@]} == 2 && (round + i) % 2 == 0)); then order=("${kinds[1]}" "${kinds[0]}"); fi
        i=$((i + 1))
        for kind in "${order[@]}"; do
            RUN_DIR=$BENCH_TMP/$part-$kind-$round
            BENCH_LOGDIR=$RUN_DIR
            mkdir -p "$RUN_DIR"
            "part_$part" "$kind" "$round"
        done
    done
done

{
    echo "## bench/repl.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Command: \`bench/repl.sh --rounds $rounds --parts $parts --only $only --requests $requests" \
        "--clients $clients --pipelines $pipelines --sync-seconds $sync_seconds --lag-seconds $lag_seconds" \
        "--lag-pipelines $lag_pipelines --lag-clients $lag_clients --keys $keys --persist $persist\`"
    echo "uptime at start: \`${uptime_start# }\`; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "Machine: $(nproc) cores, $(uname -r); $("$REDIS" --version | cut -d' ' -f1-3); tandem:" \
        "$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown)" \
        "$([[ " ${kinds[*]} " == *" tandem "* ]] || echo '(not available in this build: Redis rows only)')"
    echo "Sync driver ceiling (bench/syncbench.c, $clients clients, one request in flight each, against a" \
        "lone redis-server): PING $c_ping/s, SET $c_set/s; redis-benchmark SET -P 1 on the same server: $c_rb/s."
    echo
    "$PY" "$BENCH_DIR/report.py" repl-table "$raw"
} | if [[ -n $out ]]; then tee "$out"; else cat; fi
