#!/usr/bin/env bash
# bench/store.sh -- tandem db against redis-server, side by side, with redis-benchmark.
#
# For every persistence setting in --fsync and every run, both servers are started fresh on free
# loopback ports with the same setting, then each test at each pipeline depth runs against one
# server and immediately after against the other (which one goes first alternates), so a load
# swing on a shared machine hits both sides of a pair. Prints every raw result as a comment, then
# a markdown table: medians over the runs, their ratio, the median of the per-run ratios
# ("paired", the fairer figure when the machine's load changes during the benchmark), and the
# median CPU time (user + system, all threads) each server spent per request, which a busy
# machine disturbs much less than throughput, and how busy redis-benchmark itself was (its CPU
# time over its run time: near 100% means the client, not the server, set the rate).
#
#   bench/store.sh [--runs 3] [--fsync none[,everysec,always]] [--requests 200000]
#                  [--clients 50] [--tests set,get,incr,hset,mset] [--pipelines 1,16]
#                  [--memory [--keys 1000000]] [--pin] [--cap CPUS] [--control]
#
# --fsync none      redis: --appendonly no;                 tandem: --in-memory
# --fsync everysec  redis: --appendonly yes --appendfsync everysec; tandem: --fsync everysec
# --fsync always    redis: --appendonly yes --appendfsync always;   tandem: --fsync always
# (both with their data directory under the same /tmp directory, so on the same file system).
#
# --pin runs both servers on CPU 1 and redis-benchmark on CPU 0 (taskset), so neither side
# of a pair is scheduled onto the other's core: less noise on a 2-core machine.
#
# --cap CPUS puts each server in its own cgroup allowed CPUS of CPU time (e.g. 0.5: half a
# core, in 10 ms periods; needs root and the cgroup cpu controller), so that the servers, not
# redis-benchmark, set the rate: at -P 1 one redis-benchmark thread costs more CPU per request
# than either server and saturates its core first.
#
# --control runs redis-server in both columns (the "tandem" column is a second redis-server): an
# A/A test of the method, showing how far apart two identical servers come out on this machine.
#
# --memory loads --keys keys (16-byte keys, 32-byte values, pipelined) into each server and
# reports INFO used_memory and RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3 fsyncs=none requests=200000 clients=50 tests=set,get,incr,hset,mset pipelines=1,16
memory=0 keys=1000000 pin=0 cap='' control=0 cg_root=''
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --fsync) fsyncs=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --tests) tests=$2; shift 2 ;;
        --pipelines) pipelines=$2; shift 2 ;;
        --memory) memory=1; shift ;;
        --keys) keys=$2; shift 2 ;;
        --pin) pin=1; shift ;;
        --cap) cap=$2; shift 2 ;;
        --control) control=1; shift ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "store.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

TANDEM=${TANDEM_BIN:-build/tandem}
# the first column's server: tandem, or (--control) a second redis-server
a_kind=tandem a_label=tandem
if [[ $control == 1 ]]; then a_kind=redis a_label="redis#2"; fi
server_cpu=() client_cpu=()
if [[ $pin == 1 ]]; then server_cpu=(taskset -c 1) client_cpu=(taskset -c 0); fi
REDIS=${REDIS_SERVER:-/usr/bin/redis-server}
[[ -x $TANDEM ]] || make -j2 >/dev/null
tmp=$(mktemp -d /tmp/tandem-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    local g
    for g in "$cg_root"/tandem-bench-$$-*; do [[ -d $g ]] && cg_remove "$g"; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# The cgroup file system holding the cpu controller: v2 (cpu.max) or v1 (cpu.cfs_quota_us).
if [[ -n $cap ]]; then
    [[ $cap =~ ^[0-9]*\.?[0-9]+$ ]] && awk -v c="$cap" 'BEGIN {exit !(c >= 0.01)}' ||
        { echo "store.sh: --cap wants a number of CPUs, e.g. 0.5 (got '$cap')" >&2; exit 2; }
    if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then cg_root=/sys/fs/cgroup
    elif [[ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]]; then cg_root=/sys/fs/cgroup/cpu
    else echo "store.sh: --cap needs the cgroup cpu controller (v1 or v2)" >&2; exit 2; fi
    [[ -w $cg_root ]] || { echo "store.sh: --cap needs write access to $cg_root (root)" >&2; exit 2; }
fi

# cg_remove DIR: removes a cgroup once its process has left it (a server started in a process
# substitution is not this shell's child, so `wait` does not wait for its exit)
cg_remove() {
    for _ in $(seq 1 100); do rmdir "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "store.sh: could not remove $1" >&2
}

# cap_process PID: a new cgroup allowed $cap CPUs (10 ms periods) with PID (all its threads) in it
cap_process() {
    local g=$cg_root/tandem-bench-$$-$1 quota
    quota=$(awk -v c="$cap" 'BEGIN {printf "%d", c * 10000}')
    mkdir "$g"
    if [[ -f $g/cpu.max ]]; then echo "$quota 10000" >"$g/cpu.max"
    else echo 10000 >"$g/cpu.cfs_period_us"; echo "$quota" >"$g/cpu.cfs_quota_us"; fi
    echo "$1" >"$g/cgroup.procs"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 200); do
        redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "store.sh: server on port $1 did not start" >&2
    return 1
}

# start_server KIND FSYNC -> prints "PORT PID"
start_server() {
    local kind=$1 fsync=$2 port dir
    port=$(free_port)
    dir=$tmp/$kind-$port
    mkdir -p "$dir"
    if [[ $kind == tandem ]]; then
        local args=(db --listen "127.0.0.1:$port" --dir "$dir")
        if [[ $fsync == none ]]; then args+=(--in-memory)
        else args+=(--fsync "$fsync"); fi
        "${server_cpu[@]}" "$TANDEM" "${args[@]}" 2>"$dir/log" &
    else
        local args=(--port "$port" --bind 127.0.0.1 --save "" --dir "$dir" --daemonize no)
        if [[ $fsync == none ]]; then args+=(--appendonly no)
        else args+=(--appendonly yes --appendfsync "$fsync"); fi
        "${server_cpu[@]}" "$REDIS" "${args[@]}" >"$dir/log" 2>&1 &
    fi
    local pid=$!
    pids+=("$pid")
    [[ -n $cap ]] && cap_process "$pid"
    wait_port "$port"
    echo "$port $pid"
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    [[ -z $cg_root ]] || cg_remove "$cg_root/tandem-bench-$$-$1"
}

# CPU time (user + system, all threads) the process PID has used, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# bench PORT PIPELINE TEST PID -> line "TEST RPS CPU_US_PER_OP CLIENT_BUSY": the server's CPU
# per request and the share of its run time redis-benchmark spent on a CPU (0-1)
bench() {
    local c0 c1 t0 t1 out line
    c0=$(cpu_ticks "$4")
    t0=$(date +%s%N)
    # `times` in the substitution's shell: its children's (redis-benchmark's) user and system time
    out=$("${client_cpu[@]}" redis-benchmark -p "$1" -t "$3" -c "$clients" -n "$requests" -P "$2" -q \
        2>/dev/null | tr '\r' '\n'; times)
    t1=$(date +%s%N)
    c1=$(cpu_ticks "$4")
    line=$(grep "requests per second" <<<"$out" |
        sed -E 's/^ *([A-Z]+)[^:]*: ([0-9.]+) requests per second.*/\1 \2/')
    echo "$line $(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN {printf "%.2f", d / hz * 1e6 / n}') $(tail -1 <<<"$out" |
        awk -v ns=$((t1 - t0)) '{for (i = 1; i <= 2; i++) {split($i, a, /[ms]/); s += a[1] * 60 + a[2]}
                                printf "%.3f", s / (ns / 1e9)}')"
}

median() {
    sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2];
                   else print (a[NR/2]+a[NR/2+1])/2}'
}

results=$tmp/results
# cell_median FSYNC P TEST KIND FIELD: the median over runs of one field of the results
# (5 ops/s, 7 server CPU µs per request, 8 client busy)
cell_median() {
    awk -v f="$1" -v p="$2" -v t="$3" -v k="$4" -v c="$5" \
        '$1==f && $2==p && $3==t && $4==k {print $c}' "$results" | median
}
: >"$results"
IFS=, read -ra fsync_list <<<"$fsyncs"
IFS=, read -ra pipe_list <<<"$pipelines"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(uname -r); tandem $("$TANDEM" version | head -1 | cut -d' ' -f2), $("$REDIS" --version | cut -d' ' -f3)"
echo "# redis-benchmark -t $tests -c $clients -n $requests -q, pipelines $pipelines, $runs runs, medians$([[ $pin == 1 ]] && echo ', servers on CPU 1, client on CPU 0')$([[ -n $cap ]] && echo ", each server capped at $cap CPU")$([[ $control == 1 ]] && echo ', A/A control: the tandem column is a second redis-server')"
for fsync in "${fsync_list[@]}"; do
    for run in $(seq 1 "$runs"); do
        echo "# load run=$run fsync=$fsync $(uptime | sed -E 's/.*(load average)/\1/')"
        read -r tport tpid < <(start_server "$a_kind" "$fsync")
        read -r rport rpid < <(start_server redis "$fsync")
        i=0
        for p in "${pipe_list[@]}"; do
            for t in ${tests//,/ }; do
                # each test runs on both servers back to back, the first one alternating, so a
                # load swing on the machine hits both sides of a pair alike
                order=(tandem redis)
                (( (run + i) % 2 == 0 )) && order=(redis tandem)
                i=$((i + 1))
                for kind in "${order[@]}"; do
                    port=$tport pid=$tpid
                    [[ $kind == redis ]] && port=$rport pid=$rpid
                    bench "$port" "$p" "$t" "$pid" | while read -r tn rps cpu busy; do
                        echo "$fsync $p $tn $kind $rps $run $cpu $busy" >>"$results"
                        echo "# raw run=$run fsync=$fsync P=$p $tn $([[ $kind == tandem ]] && echo "$a_label" || echo redis) $rps cpu_us_per_op=$cpu client_busy=$busy"
                    done
                done
            done
        done
        stop_server "$tpid"
        stop_server "$rpid"
        echo "# fsync=$fsync run $run done" >&2
    done
done

if [[ -s $results ]]; then
    echo
    echo "| persistence | test | -P | $a_label ops/s | redis ops/s | $a_label/redis | paired |" \
         "$a_label CPU µs/op | redis CPU µs/op | client busy ($a_label / redis) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for fsync in "${fsync_list[@]}"; do
        for p in "${pipe_list[@]}"; do
            for t in $(echo "$tests" | tr a-z A-Z | tr , ' '); do
                tm=$(cell_median "$fsync" "$p" "$t" tandem 5)
                rm_=$(cell_median "$fsync" "$p" "$t" redis 5)
                [[ $tm == 0 && $rm_ == 0 ]] && continue
                ratio=$(awk -v a="$tm" -v b="$rm_" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}')
                # median over runs of tandem/redis measured back to back in the same run
                paired=$(awk -v f="$fsync" -v p="$p" -v t="$t" '$1==f && $2==p && $3==t {v[$6, $4]=$5; r[$6]=1}
                         END {for (k in r) if (v[k, "redis"] > 0) print v[k, "tandem"] / v[k, "redis"]}' \
                         "$results" | median)
                tc=$(cell_median "$fsync" "$p" "$t" tandem 7)
                rc=$(cell_median "$fsync" "$p" "$t" redis 7)
                tb=$(cell_median "$fsync" "$p" "$t" tandem 8)
                rb=$(cell_median "$fsync" "$p" "$t" redis 8)
                printf "| %s | %s | %s | %.0f | %.0f | %s | %.2f | %.2f | %.2f | %.0f%% / %.0f%% |\n" \
                    "$fsync" "$t" "$p" "$tm" "$rm_" "$ratio" "$paired" "$tc" "$rc" \
                    "$(awk -v b="$tb" 'BEGIN {print b * 100}')" "$(awk -v b="$rb" 'BEGIN {print b * 100}')"
            done
        done
    done
fi

if [[ $memory == 1 ]]; then
    echo
    echo "| server | keys | used_memory | RSS | bytes/key (used_memory) |"
    echo "|---|---|---|---|---|"
    for kind in tandem redis; do
        read -r port pid < <(start_server "$kind" none)
        /usr/bin/python3 bench/store_mem.py "$port" "$keys" "$pid" "$kind"
        stop_server "$pid"
    done
fi
