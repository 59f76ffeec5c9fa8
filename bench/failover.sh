#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/failover.sh -- kill -9 the store's primary under write load: how long until writes are
# acknowledged again, how many requests fail, how many acknowledged writes are lost.
#
# The same client (bench/failover_drill.py: redis-py, 8 writer threads doing INCR on their own
# counters with an acknowledged-write log) runs against every row; each run starts every process
# fresh, kills the primary (kill -9) at --kill-at seconds, writes on until --after seconds past
# the first acknowledged write after the kill, and reads every counter back from the new primary.
# Rows run interleaved (run 1 of every row, then run 2 ...). Reports p50/p99 over the runs.
#
# Rows:
#   redis       Redis 7 primary + 1 replica + 3 Sentinels (quorum 2); clients ask Sentinel
#               (SENTINEL get-master-addr-by-name) on every reconnect. Async replication.
#   redis-wait  the closest Redis has to sync mode: primary + 2 replicas, min-replicas-to-write 1
#               (min-replicas-max-lag 10) on every node, and WAIT 1 <wait-timeout> after each
#               write (a write counts only when WAIT says a replica has it). Two replicas, because
#               with one the promoted node has no replica left and min-replicas-to-write refuses
#               every write from then on.
#   tandem-builtin, tandem-etcd  two `tandem db` nodes with --sync-replicas 1 and the HA agent
#               (tandem arbiter / a single-node etcd as coordinator), clients through
#               `tandem lb --protocol tcp --check resp-role`. Run only when `tandem db --help`
#               mentions --coordinator; otherwise the row prints "tandem: not available in this
#               build". (See tandem_run below: the lead completes it.)
#
# Everything on 127.0.0.1 with ephemeral ports, files in a temp dir, processes ended by PID.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: bench/failover.sh [--runs 10] [--rows redis,redis-wait,tandem-builtin,tandem-etcd]
                         [--threads 8] [--kill-at 2] [--after 2] [--down-after 1000]
                         [--failover-timeout 5000] [--wait-timeout 1000] [--lease-ttl 1s]
                         [--etcd-lease-ttl 2s] [--lb-inter 100ms]
                         [--out FILE] [--keep]

  --runs N             runs per row (default 10); each Redis run takes ~12 s
  --rows LIST          rows to run (default all four; tandem rows need tandem db --coordinator)
  --threads N          writer threads (default 8)
  --kill-at S          kill -9 the primary S seconds after the writers start (default 2)
  --after S            keep writing S seconds after the first acknowledged write after the kill
  --down-after MS      Sentinel down-after-milliseconds (default 1000; Redis ships 30000)
  --failover-timeout MS  Sentinel failover-timeout (default 5000)
  --wait-timeout MS    redis-wait row: WAIT 1 MS after each write (default 1000)
  --lease-ttl DUR      tandem-builtin: tandem db --lease-ttl (default 1s)
  --etcd-lease-ttl DUR tandem-etcd: tandem db --lease-ttl (default 2s: etcd's leases are whole
                       seconds and its minimum TTL here is 2 s)
  --lb-inter DUR       tandem rows: the store pool's role check interval (default 100ms)
  --out FILE           also write the report to FILE
  --keep               keep the temp dir (configs, logs, per-run JSON)
REDIS_SERVER=path and TANDEM=path override the binaries.
EOF
}

runs=10 rows=redis,redis-wait,tandem-builtin,tandem-etcd threads=8 kill_at=2 after=2
down_after=1000 failover_timeout=5000 wait_timeout=1000 lease_ttl=1s etcd_lease_ttl=2s lb_inter=100ms out=""
while (($#)); do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --kill-at) kill_at=$2; shift 2 ;;
    --after) after=$2; shift 2 ;;
    --down-after) down_after=$2; shift 2 ;;
    --failover-timeout) failover_timeout=$2; shift 2 ;;
    --wait-timeout) wait_timeout=$2; shift 2 ;;
    --lease-ttl) lease_ttl=$2; shift 2 ;;
    --etcd-lease-ttl) etcd_lease_ttl=$2; shift 2 ;;
    --lb-inter) lb_inter=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || bench_die "--runs wants a positive integer"

REDIS=${REDIS_SERVER:-/usr/bin/redis-server}
bench_need_tools redis-cli
[[ -x $REDIS ]] || bench_die "no redis-server at $REDIS (scripts/deps.sh installs redis-server)"
"$PY" -c 'import redis' 2>/dev/null || bench_die "$PY has no redis module (python3-redis)"

IFS=, read -r -a row_list <<<"$rows"
for r in "${row_list[@]}"; do
    case $r in
    redis | redis-wait | tandem-builtin | tandem-etcd) ;;
    *) bench_die "unknown row '$r' (redis, redis-wait, tandem-builtin, tandem-etcd)" ;;
    esac
done

loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
uptime_start=$(uptime)
bench_init tandem-failover
raw=$BENCH_TMP/raw.jsonl
: >"$raw"

# bench_wait_redis PORT [TIMEOUT_S] [NAME] and bench_redis_info are in lib.sh.

# --- Redis + Sentinel ------------------------------------------------------------------------------

# redis_node NAME PORT DIR [redis-server options...] -- start one redis-server (no persistence).
redis_node() {
    local name=$1 port=$2 dir=$3
    shift 3
    mkdir -p "$dir"
    bench_start "$name" "$REDIS" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$dir" --daemonize no --repl-diskless-sync-delay 0 "$@"
    bench_wait_redis "$port" 10 "$name" || bench_die "$name did not start"
}

# sentinel NAME PORT MASTER_PORT -- start one Sentinel watching 127.0.0.1:MASTER_PORT.
sentinel() {
    local name=$1 port=$2 mport=$3 conf=$RUN_DIR/$1.conf
    cat >"$conf" <<EOF
port $port
bind 127.0.0.1
daemonize no
dir $RUN_DIR
sentinel monitor mymaster 127.0.0.1 $mport 2
sentinel down-after-milliseconds mymaster $down_after
sentinel failover-timeout mymaster $failover_timeout
sentinel parallel-syncs mymaster 1
EOF
    bench_start "$name" "$REDIS" "$conf" --sentinel
    bench_wait_redis "$port" 10 "$name" || bench_die "$name did not start"
}

# sentinel_ready PORT NREPLICAS -- the Sentinel knows the master, NREPLICAS replicas, 2 peers.
sentinel_ready() {
    local m
    m=$(redis-cli -p "$1" SENTINEL master mymaster 2>/dev/null | paste -sd' ') || return 1
    [[ " $m " == *" flags master "* && " $m " == *" num-slaves $2 "* &&
        " $m " == *" num-other-sentinels 2 "* ]]
}

# redis_run ROW RUN -- one drill against Redis + Sentinel; appends a JSON line to $raw.
redis_run() {
    local row=$1 run=$2 nrep=1 opts=() drill_opts=() ports p_m i s ok deadline
    [[ $row == redis-wait ]] && { nrep=2; opts=(--min-replicas-to-write 1 --min-replicas-max-lag 10)
        drill_opts=(--wait 1 --wait-timeout-ms "$wait_timeout"); }
    RUN_DIR=$BENCH_TMP/$row-$run
    BENCH_LOGDIR=$RUN_DIR
    mkdir -p "$RUN_DIR"
    read -r -a ports <<<"$(bench_ports $((1 + nrep + 3)))"
    p_m=${ports[0]}
    redis_node r0 "$p_m" "$RUN_DIR/r0" "${opts[@]}"
    local nodes=(--node "127.0.0.1:$p_m=$(bench_pid r0)")
    for ((i = 1; i <= nrep; i++)); do
        redis_node "r$i" "${ports[i]}" "$RUN_DIR/r$i" --replicaof 127.0.0.1 "$p_m" "${opts[@]}"
        nodes+=(--node "127.0.0.1:${ports[i]}=$(bench_pid "r$i")")
    done
    local sports=() slist=""
    for ((s = 0; s < 3; s++)); do
        sports+=("${ports[1 + nrep + s]}")
        sentinel "s$s" "${sports[s]}" "$p_m"
        slist+="${slist:+,}127.0.0.1:${sports[s]}"
    done
    # Ready: every replica online at the master, and every Sentinel sees the master, all
    # replicas and both other Sentinels (hello messages every 2 s: a few seconds).
    deadline=$(($(date +%s) + 30))
    while :; do
        ok=1
        [[ $(bench_redis_info "$p_m" replication | grep -c 'state=online') == "$nrep" ]] || ok=0
        for s in "${sports[@]}"; do sentinel_ready "$s" "$nrep" || ok=0; done
        ((ok)) && break
        (($(date +%s) < deadline)) || bench_die "$row run $run: Sentinels not ready within 30 s (logs: $RUN_DIR)"
        sleep 0.2
    done
    run_drill "$row" "$run" --sentinel "$slist" --master mymaster "${nodes[@]}" "${drill_opts[@]}"
    for n in r0 r1 r2 s0 s1 s2; do bench_stop "$n"; done
}

# run_drill ROW RUN DRILL_ARGS... -- run the client (killable by the cleanup trap), record its
# JSON line (with the Sentinel event times when there are Sentinel logs) in $raw.
run_drill() {
    local row=$1 run=$2 json rc=0
    shift 2
    json=$RUN_DIR/drill.json
    "$PY" "$BENCH_DIR/failover_drill.py" --threads "$threads" --kill-at "$kill_at" \
        --after "$after" "$@" >"$json" 2>"$RUN_DIR/drill.log" &
    BENCH_PIDS[drill]=$!
    # (stderr off while waiting: bash would report the primary the drill killed as "Killed")
    { wait "${BENCH_PIDS[drill]}" || rc=$?; } 2>/dev/null
    unset "BENCH_PIDS[drill]"
    ((rc == 0)) || bench_die "$row run $run: drill failed (exit $rc): $(tail -n 5 "$RUN_DIR/drill.log")"
    "$PY" "$BENCH_DIR/report.py" drill-merge "$json" "$row" "$run" "$RUN_DIR"/s?.log >>"$raw"
    bench_log "$row run $run: $(tail -n 1 "$raw" | "$PY" -c 'import json,sys; j=json.loads(sys.stdin.read())
print("kill->first ack %s ms, failed %s, acked %s, lost %s" % (j["kill_to_first_ack_ms"], j["failed_requests"], j["acked"], j["lost_writes"]))')"
}

# --- tandem --------------------------------------------------------------------------------------
#
# The drill needs from tandem: `tandem db` nodes that answer ROLE (master/slave) and INCR, one
# address that always leads to the current primary (`tandem lb --protocol tcp --check resp-role`),
# and the node PIDs (the drill kills the node answering ROLE master). Two nodes with
# --sync-replicas 1 and --lease-ttl (--lease-ttl option here, default 1s), a `tandem arbiter` or
# a single-node etcd, and the balancer:
#   tandem arbiter --listen 127.0.0.1:PA --dir DIR
#   tandem db --listen 127.0.0.1:PN --dir DIR --sync-replicas 1 --lease-ttl TTL \
#             --coordinator builtin://127.0.0.1:PA|etcd://127.0.0.1:PE --cluster bench
#   tandem lb --listen 127.0.0.1:PL --protocol tcp --mode active-passive \
#             --server db1=127.0.0.1:P1 --server db2=127.0.0.1:P2 --check resp-role \
#             --inter 100ms --fall 2 --rise 1
tandem_available() {
    [[ -x $TANDEM ]] && "$TANDEM" db --help 2>&1 | grep -q -- '--coordinator'
}

# tandem_run BACKEND RUN -- BACKEND builtin|etcd. One drill; appends a JSON line to $raw.
tandem_run() {
    local backend=$1 run=$2 ports coord deadline p ttl=$lease_ttl
    [[ $backend == etcd ]] && ttl=$etcd_lease_ttl
    RUN_DIR=$BENCH_TMP/tandem-$backend-$run
    BENCH_LOGDIR=$RUN_DIR
    mkdir -p "$RUN_DIR"
    read -r -a ports <<<"$(bench_ports 5)"   # coordinator, coordinator peer (etcd), db1, db2, lb
    if [[ $backend == builtin ]]; then
        bench_start coord "$TANDEM" arbiter --listen "127.0.0.1:${ports[0]}" --dir "$RUN_DIR/arbiter"
        bench_wait_redis "${ports[0]}" 10 coord || bench_die "tandem arbiter did not start"
        coord=builtin://127.0.0.1:${ports[0]}
    else
        bench_need_tools etcd
        bench_start coord "$(bench_tool etcd)" --name bench --data-dir "$RUN_DIR/etcd" \
            --listen-client-urls "http://127.0.0.1:${ports[0]}" \
            --advertise-client-urls "http://127.0.0.1:${ports[0]}" \
            --listen-peer-urls "http://127.0.0.1:${ports[1]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ports[1]}" \
            --initial-cluster "bench=http://127.0.0.1:${ports[1]}"
        bench_wait_http "http://127.0.0.1:${ports[0]}/health" 15 '"health":"true"' coord ||
            bench_die "etcd did not become healthy"
        coord=etcd://127.0.0.1:${ports[0]}
    fi
    # The nodes find each other through the coordinator (no --replicaof, names default to the
    # listen address); the drill kills whichever node answers ROLE master.
    local i
    for i in 1 2; do
        bench_start "db$i" "$TANDEM" db --listen "127.0.0.1:${ports[i + 1]}" --dir "$RUN_DIR/db$i" \
            --sync-replicas 1 --coordinator "$coord" --cluster bench --lease-ttl "$ttl"
        bench_wait_redis "${ports[i + 1]}" 10 "db$i" || bench_die "tandem db$i did not start"
    done
    bench_start lb "$TANDEM" lb --listen "127.0.0.1:${ports[4]}" --protocol tcp \
        --mode active-passive --server "db1=127.0.0.1:${ports[2]}" --server "db2=127.0.0.1:${ports[3]}" \
        --check resp-role --inter "$lb_inter" --fall 2 --rise 1
    # Ready: the balancer reaches a master, and that master has its replica connected and in
    # its sync set (INFO replication: tandem_sync_state ok), as tests/integration/test_failover.py
    # waits for.
    deadline=$(($(date +%s) + 30))
    until redis-cli -p "${ports[4]}" ROLE 2>/dev/null | head -1 | grep -qx master &&
        for p in "${ports[2]}" "${ports[3]}"; do bench_redis_info "$p" replication; done |
        grep -q 'tandem_sync_state:ok'; do
        (($(date +%s) < deadline)) || bench_die "tandem-$backend run $run: cluster not ready within 30 s (logs: $RUN_DIR)"
        sleep 0.1
    done
    run_drill "tandem-$backend" "$run" --addr "127.0.0.1:${ports[4]}" \
        --node "127.0.0.1:${ports[2]}=$(bench_pid db1)" --node "127.0.0.1:${ports[3]}=$(bench_pid db2)"
    for n in lb db1 db2 coord; do bench_stop "$n"; done
}

# --- the runs, interleaved -------------------------------------------------------------------------
tandem_ok=0
tandem_available && tandem_ok=1
for ((run = 1; run <= runs; run++)); do
    for r in "${row_list[@]}"; do
        case $r in
        redis | redis-wait) redis_run "$r" "$run" ;;
        tandem-*)
            if ((tandem_ok)); then
                tandem_run "${r#tandem-}" "$run"
            elif ((run == 1)); then
                bench_log "$r: tandem: not available in this build ('$TANDEM db --help' has no --coordinator)"
            fi
            ;;
        esac
    done
done

{
    echo "## bench/failover.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Command: \`bench/failover.sh --runs $runs --rows $rows --threads $threads --kill-at $kill_at" \
        "--after $after --down-after $down_after --failover-timeout $failover_timeout --wait-timeout $wait_timeout" \
        "--lease-ttl $lease_ttl --etcd-lease-ttl $etcd_lease_ttl --lb-inter $lb_inter\`"
    echo "uptime at start: \`${uptime_start# }\`; load average at end: $(cut -d' ' -f1-3 /proc/loadavg) (at start $loadavg_start)"
    echo "Machine: $(nproc) cores, $(uname -r); $("$REDIS" --version | cut -d' ' -f1-3); redis-py $("$PY" -c 'import redis; print(redis.__version__)')"
    echo "tandem: $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown) ($TANDEM)"
    echo
    "$PY" "$BENCH_DIR/report.py" drill-table "$raw"
    for r in "${row_list[@]}"; do
        if [[ $r == tandem-* ]] && ((tandem_ok == 0)); then
            echo
            echo "$r — tandem: not available in this build"
        fi
    done
} | if [[ -n $out ]]; then tee "$out"; else cat; fi
