# bench/lib.sh — what the bench scripts share; sourced, not run, by
# compare.sh and upload.sh. The caller sets WORK (its temp dir), PASS (the
# CA key's passphrase), SERVER (the server binary) and PIDS=() (what
# cleanup stops), may set SHM (a dir in /dev/shm to remove), and defines
# die (its own name in the message).

# Stops every process started here, by PID, and removes the temp dirs.
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    if [ -n "${SHM:-}" ]; then rm -rf "$SHM"; fi
}

# A field of a one-line JSON object: jget JSON KEY.
jget() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }

# stop_pid PID: stops a process started here and waits for it.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# start_certboard DIR DATA_DIR CPU_LIST SERVER_FLAGS...: the server pinned
# to CPU_LIST, both listeners on 127.0.0.1 port 0, its keys in DIR/keys,
# its database in DATA_DIR, its output in DIR/stdout and DIR/stderr. Sets
# SERVER_PID, CA_ADDR and BB_ADDR once it listens (10 s at most).
start_certboard() {
    local dir=$1 data=$2 cpus=$3
    shift 3
    mkdir -p "$dir"
    local out="$dir/stdout" err="$dir/stderr"
    CERTBOARD_CA_PASSPHRASE="$PASS" RUST_LOG=warn \
        taskset -c "$cpus" "$SERVER" \
        --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
        --keys-dir "$dir/keys" --data-dir "$data" "$@" \
        >"$out" 2>"$err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 1 100); do
        # The server may not have opened its output yet: not an error.
        CA_ADDR=$(awk '/^listening ca / { print $3 }' "$out" 2>/dev/null || true)
        BB_ADDR=$(awk '/^listening blackboard / { print $3 }' "$out" 2>/dev/null || true)
        [ -n "$CA_ADDR" ] && [ -n "$BB_ADDR" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$err" >&2
    die "the server did not start"
}
