# shellcheck shell=bash
# Helpers shared by scripts/bench: settings from the environment, starting and stopping the two
# servers on loopback, reading RSS and stats, building the load generator (tools/loadgen, a std-only
# workspace member). Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- settings (override from the environment) ---------------------------------------------------
BENCH_THREADS=${BENCH_THREADS:-2}           # server worker threads (-t), same for both servers
BENCH_MEM=${BENCH_MEM:-1024}                # server memory limit in MB (-m), same for both
BENCH_DURATION=${BENCH_DURATION:-8}         # seconds per measured run
BENCH_REPS=${BENCH_REPS:-3}                 # runs per server and workload (alternated mc, rc, ...)
BENCH_CLIENT_THREADS=${BENCH_CLIENT_THREADS:-2}  # memcaslap -T / loadgen --threads
BENCH_CONC=${BENCH_CONC:-32}                # concurrent connections
BENCH_DEPTH=${BENCH_DEPTH:-16}              # requests in flight per connection when pipelining
BENCH_KEYS=${BENCH_KEYS:-100000}            # key space of the loadgen workloads (preloaded)
BENCH_VALUE=${BENCH_VALUE:-100}             # value size in bytes
BENCH_WORKLOADS=${BENCH_WORKLOADS:-"get-heavy multiget-10 set-heavy-pipe set-heavy-nopipe"}
MEMCACHED=${MEMCACHED:-/usr/bin/memcached}
REPCACHED=${REPCACHED:-$ROOT/target/release/repcached}
MEMCASLAP=${MEMCASLAP:-memcaslap}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench}
LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen}
BENCH_LOAD_TIMEOUT=${BENCH_LOAD_TIMEOUT:-600} # seconds any one bulk load may take before the run fails

mkdir -p "$BENCH_OUT/logs"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- processes we started, and only those, are stopped on exit ----------------------------------
STARTED_PIDS=()
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Builds tools/loadgen (the `loadgen` workspace member) in the release profile; cargo decides
# whether anything changed, so this is a no-op when it is up to date.
build_loadgen() {
    cargo build --quiet --release -p loadgen --manifest-path "$ROOT/Cargo.toml" ||
        die "cannot build loadgen (cargo build --release -p loadgen)"
    [[ -x $LOADGEN ]] || die "loadgen not found at $LOADGEN after building it"
}

check_tools() {
    [[ -x $MEMCACHED ]] || die "memcached not found at $MEMCACHED"
    [[ -x $REPCACHED ]] || die "repcached not found at $REPCACHED (cargo build --release)"
    command -v "$MEMCASLAP" >/dev/null || die "memcaslap not found (apt install libmemcached-tools)"
    build_loadgen
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Seconds a server may take to bind and answer stats. A repcached node started with -x may hold
# its client port back until its initial sync is done, so the resync measurement raises this.
START_TIMEOUT=${START_TIMEOUT:-10}

# Polls until a stats request on PORT succeeds, for at most START_TIMEOUT seconds.
wait_ready() {
    local port=$1 deadline=$((SECONDS + START_TIMEOUT))
    until "$LOADGEN" stat --server "127.0.0.1:$port" --name pid >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# start_memcached MEM THREADS: sets SRV_PID and SRV_PORT.
start_memcached() {
    local mem=$1 threads=$2 user=()
    SRV_PORT=$(free_port)
    [[ $(id -u) == 0 ]] && user=(-u root)
    "$MEMCACHED" -p "$SRV_PORT" -U 0 -l 127.0.0.1 -t "$threads" -m "$mem" -c 4096 "${user[@]}" \
        >"$BENCH_OUT/logs/memcached-$SRV_PORT.log" 2>&1 &
    SRV_PID=$!
    STARTED_PIDS+=("$SRV_PID")
    wait_ready "$SRV_PORT" || die "memcached did not start (see $BENCH_OUT/logs/memcached-$SRV_PORT.log)"
}

# start_repcached MEM THREADS [EXTRA ARGS...]: sets SRV_PID and SRV_PORT. The client port is
# chosen by the server (-p -1) and read from its "listening on tcp" line; EXTRA defaults to -X 0.
start_repcached() {
    local mem=$1 threads=$2
    shift 2
    local extra=("$@")
    ((${#extra[@]})) || extra=(-X 0)
    local logf
    logf=$(mktemp "$BENCH_OUT/logs/repcached-XXXXXX.log")
    "$REPCACHED" -p -1 -U 0 -l 127.0.0.1 -t "$threads" -m "$mem" -c 4096 "${extra[@]}" >"$logf" 2>&1 &
    SRV_PID=$!
    STARTED_PIDS+=("$SRV_PID")
    local deadline=$((SECONDS + START_TIMEOUT))
    SRV_PORT=
    while [[ -z $SRV_PORT ]]; do
        SRV_PORT=$(sed -n 's/^repcached: listening on tcp 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$logf" | head -1)
        [[ -n $SRV_PORT ]] && break
        kill -0 "$SRV_PID" 2>/dev/null || die "repcached exited: $(tail -3 "$logf")"
        ((SECONDS < deadline)) || die "repcached did not print its port (see $logf)"
        sleep 0.05
    done
    wait_ready "$SRV_PORT" || die "repcached does not answer stats (see $logf)"
}

# stop_server PID: TERM, then KILL after 10 s (any process in STARTED_PIDS, not only servers).
stop_server() {
    local pid=$1 deadline=$((SECONDS + 10))
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# run_tracked OUTFILE CMD...: runs CMD in the background, stdout to OUTFILE, and waits for it: bash
# runs an INT/TERM trap only once a foreground command has finished, but interrupts `wait` at
# once, and cleanup then stops CMD too. Returns CMD's exit status.
run_tracked() {
    local out=$1 pid rc=0
    shift
    "$@" >"$out" &
    pid=$!
    STARTED_PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# forget_pid PID: a process we started has ended (and was waited for): cleanup leaves it alone.
forget_pid() {
    local p keep=()
    for p in "${STARTED_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    STARTED_PIDS=("${keep[@]}")
}

# cpu_ticks PID: user + system CPU time the process has used, in clock ticks (getconf CLK_TCK).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
export CLK_TCK
CLK_TCK=$(getconf CLK_TCK)

# server_ops PORT: cmd_get + cmd_set, the operations the server itself counted (each key of a
# multi-get counts, as in memcached).
server_ops() {
    "$LOADGEN" stats --server "127.0.0.1:$1" | awk '$2 == "cmd_get" || $2 == "cmd_set" { n += $3 } END { print n + 0 }'
}

# ctx_switches PID: voluntary + involuntary context switches summed over the process's threads.
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# server_stat PORT NAME [GROUP]: one value from `stats [GROUP]`.
server_stat() {
    local out
    out=$("$LOADGEN" stat --server "127.0.0.1:$1" --name "$2" ${3:+--group "$3"}) || return 1
    echo "${out#value=}"
}

# field LINE NAME: the value of NAME=value in a loadgen result line.
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

machine_line() {
    printf 'nproc %s, %s, kernel %s, load average at start %s' "$(nproc)" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(uname -r)" "$(loadavg)"
}
