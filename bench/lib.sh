# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# bench/lib.sh -- helpers shared by the bench/*.sh scripts (sourced, not run).
#
# Every process a script starts goes through bench_start, which records its PID; bench_cleanup
# (installed as the EXIT trap by bench_init) ends exactly those PIDs, plus the children they
# forked (an nginx master's worker), and nothing else. Ports come from the kernel (ephemeral),
# everything listens on 127.0.0.1, and all generated configs and logs live in one temp dir.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
TANDEM=${TANDEM:-$REPO_DIR/build/tandem}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

declare -A BENCH_PIDS=()    # name -> pid
BENCH_TMP=""
BENCH_KEEP=0

bench_log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# bench_need_tools TOOL... -- exit with one clear message when any tool is missing.
bench_need_tools() {
    local missing=() t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || [[ -x /usr/sbin/$t ]] || missing+=("$t")
    done
    if ((${#missing[@]})); then
        bench_die "missing: ${missing[*]} -- run scripts/deps.sh --bench (installs haproxy nginx wrk)"
    fi
}

# bench_tool NAME -- path of a tool that may live in /usr/sbin (not on a user's PATH).
bench_tool() {
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"; else echo "/usr/sbin/$1"; fi
}

# bench_init PREFIX -- make the temp dir and install the cleanup trap.
bench_init() {
    BENCH_TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$BENCH_TMP"   # an nginx worker that drops to `nobody` must reach its files
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# bench_children PID -- direct children of PID (reads /proc, no name matching).
bench_children() {
    local f
    for f in /proc/"$1"/task/*/children; do
        [[ -r $f ]] && cat "$f" 2>/dev/null
    done | tr ' ' '\n' | grep -E '^[0-9]+$' || true
}

# bench_stop NAME -- end one recorded process (and its children): CONT, TERM, then KILL after 3 s.
bench_stop() {
    local name=$1 pid=${BENCH_PIDS[$1]:-} kids i
    [[ -n $pid ]] || return 0
    unset "BENCH_PIDS[$name]"
    # (braces: a process killed elsewhere, e.g. by a drill, reaped without a "Killed" notice)
    kill -0 "$pid" 2>/dev/null || { { wait "$pid"; } 2>/dev/null || true; return 0; }
    kids=$(bench_children "$pid")
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
}

bench_cleanup() {
    local name
    trap - EXIT INT TERM
    for name in "${!BENCH_PIDS[@]}"; do bench_stop "$name"; done
    if [[ -n $BENCH_TMP && $BENCH_KEEP == 0 ]]; then
        rm -rf "$BENCH_TMP"
    elif [[ -n $BENCH_TMP ]]; then
        bench_log "kept $BENCH_TMP"
    fi
}

# bench_start NAME CMD... -- run CMD in the background, output to $BENCH_LOGDIR/NAME.log
# (BENCH_LOGDIR defaults to the temp dir; a restarted NAME appends to the same log).
bench_start() {
    local name=$1
    shift
    "$@" >>"${BENCH_LOGDIR:-$BENCH_TMP}/$name.log" 2>&1 &
    BENCH_PIDS[$name]=$!
}

# bench_pid NAME -- PID recorded for NAME.
bench_pid() { echo "${BENCH_PIDS[$1]}"; }

# bench_alive NAME -- true while the process runs; else prints its log tail and fails.
bench_alive() {
    local pid=${BENCH_PIDS[$1]:-}
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then return 0; fi
    local rc=0
    [[ -n $pid ]] && { wait "$pid" 2>/dev/null || rc=$?; }
    if ((rc > 128)); then
        bench_log "$1 (pid $pid) died of signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null)); last lines of its log:"
    else
        bench_log "$1 (pid $pid) is not running (exit status $rc); last lines of its log:"
    fi
    tail -n 20 "${BENCH_LOGDIR:-$BENCH_TMP}/$1.log" >&2 2>/dev/null || true
    return 1
}

# bench_ports N -- N distinct free ports on 127.0.0.1 (all bound at once, then released).
bench_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# bench_wait_http URL [TIMEOUT_S] [REGEX] [NAME] -- poll until URL answers 200 (and, if REGEX is
# given, the response head+body matches it). Fails after TIMEOUT_S (default 10), or at once when
# the process recorded as NAME has exited.
bench_wait_http() {
    local url=$1 timeout=${2:-10} re=${3:-} name=${4:-} deadline out
    deadline=$(($(date +%s%N) + timeout * 1000000000))
    while (($(date +%s%N) < deadline)); do
        if [[ -n $name ]] && ! kill -0 "${BENCH_PIDS[$name]:-0}" 2>/dev/null; then
            return 1
        fi
        if out=$(curl -s -i --max-time 0.5 "$url" 2>/dev/null) &&
            [[ $out == HTTP/1.1\ 200* ]] && { [[ -z $re ]] || grep -qE "$re" <<<"$out"; }; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# bench_cpu_ticks PID... -- utime+stime (clock ticks) of the PIDs and their children, summed.
bench_cpu_ticks() {
    local total=0 pid p stat f
    for pid in "$@"; do
        for p in "$pid" $(bench_children "$pid"); do
            stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
            stat=${stat##*) }   # drop "pid (comm) ", comm may hold spaces
            # fields after comm: state(1) ... utime is field 14 overall = 12th here, stime 13th
            read -r -a f <<<"$stat"
            total=$((total + f[11] + f[12]))
        done
    done
    echo "$total"
}

# bench_nginx_backend DIR NAME PORT BODY [HEADER] -- config for a fast single-process nginx
# backend: master_process off, 1 worker, `return 200 BODY`, keepalive_requests 1000000.
# HEADER non-empty adds `X-Server: HEADER`. Prints the nginx command line to run.
bench_nginx_backend() {
    local dir=$1/$2 port=$3 body=$4 hdr=${5:-} extra=""
    mkdir -p "$dir/logs"
    [[ -n $hdr ]] && extra="add_header X-Server $hdr always;"
    cat >"$dir/nginx.conf" <<EOF
master_process off;
daemon off;
worker_processes 1;
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    default_type text/plain;
    server {
        listen 127.0.0.1:$port;
        location / { $extra return 200 "$body\\n"; }
    }
}
EOF
    echo "$(bench_tool nginx) -p $dir/ -e $dir/logs/error.log -c $dir/nginx.conf"
}

# bench_wait_redis PORT [TIMEOUT_S] [NAME] -- poll until a RESP server on 127.0.0.1:PORT answers
# PING (any reply, even an error such as -LOADING or -NOAUTH, means it listens). Fails after
# TIMEOUT_S (default 10), or at once when the process recorded as NAME has exited.
bench_wait_redis() {
    local port=$1 timeout=${2:-10} name=${3:-} deadline
    deadline=$(($(date +%s%N) + timeout * 1000000000))
    while (($(date +%s%N) < deadline)); do
        if [[ -n $name ]] && ! kill -0 "${BENCH_PIDS[$name]:-0}" 2>/dev/null; then
            bench_alive "$name" || true
            return 1
        fi
        [[ -n $(redis-cli -p "$port" PING 2>/dev/null) ]] && return 0
        sleep 0.05
    done
    return 1
}

# bench_redis_info PORT [SECTION] -- INFO output without carriage returns (empty on error).
bench_redis_info() {
    redis-cli -p "$1" INFO ${2:+"$2"} 2>/dev/null | tr -d '\r' || true
}

# bench_redis_field PORT SECTION FIELD -- one INFO field's value (empty when absent).
bench_redis_field() {
    bench_redis_info "$1" "$2" | sed -n "s/^$3://p" | head -n 1
}

# bench_median -- median of the numbers on stdin, one per line (0 for none).
bench_median() {
    sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2];
                   else print (a[NR/2]+a[NR/2+1])/2}'
}
