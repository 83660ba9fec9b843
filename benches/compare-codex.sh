#!/usr/bin/env bash
# Compares authbridge with the real Codex app-server through the same load driver: account/read at
# 1x1, 4x16 and 16x8 (connections x in flight), time to /readyz, and idle RSS. Prints Markdown.
#
#   bash benches/compare-codex.sh            # installs @openai/codex@0.169.0 under target/ once
#   DURATION=10 bash benches/compare-codex.sh
#
# Skips cleanly (exit 0, one line saying why) when npm is missing or the package cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.169.0
duration=${DURATION:-5}
prefix=target/codex-$version
codex=$prefix/node_modules/.bin/codex

if ! command -v npm >/dev/null 2>&1; then
    echo "compare-codex: npm is not installed; skipping the comparison"
    exit 0
fi
if [ ! -x "$codex" ]; then
    mkdir -p "$prefix"
    if ! npm install --prefix "$prefix" --no-audit --no-fund --silent "@openai/codex@$version" >/dev/null 2>&1; then
        echo "compare-codex: could not install @openai/codex@$version from npm; skipping the comparison"
        exit 0
    fi
fi

cargo build --release --quiet
cargo bench --bench load --no-run --quiet 2>/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# As in `cargo bench --bench load`: servers on CPU 0, whatever measures them on CPU 1.
pin=()
probe=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    pin=(taskset -c 0)
    probe=(taskset -c 1)
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# `startup PORT COMMAND...`: starts the command, polls GET /readyz over raw TCP until it answers 200
# and stops it, five times, each with a fresh empty home ("{home}" in the arguments and CODEX_HOME);
# prints the median milliseconds. `serve PORT LOG COMMAND...` starts it for good; prints its PID,
# which leads a process group of its own.
readiness() {
    "${probe[@]}" python3 - "$@" <<'EOF'
import os, socket, statistics, subprocess, sys, tempfile, time
mode, port, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
request = f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()

def start(command, output):
    home = tempfile.mkdtemp(dir=os.environ["WORK"])
    env = dict(os.environ, CODEX_HOME=home)
    started = time.monotonic()
    child = subprocess.Popen([arg.replace("{home}", home) for arg in command], env=env,
                             stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    while time.monotonic() - started < 60:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(request)
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return child, (time.monotonic() - started) * 1000
        except OSError:
            pass
        time.sleep(0.0002)
    sys.exit("server did not become ready within 60 s")

if mode == "startup":
    samples = []
    for _ in range(5):
        child, ms = start(rest, subprocess.DEVNULL)
        samples.append(ms)
        os.killpg(child.pid, 9)  # the whole group: Codex's launcher runs the server as a child
        child.wait()
    print(f"{statistics.median(samples):.1f}")
else:
    child, _ = start(rest[1:], open(rest[0], "w"))
    print(child.pid)
EOF
}

# Resident set size of a process and all its descendants, in MiB.
tree_rss_mib() {
    python3 - "$1" <<'EOF'
import os, sys
def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += open(f"/proc/{pid}/task/{task}/children").read().split()
        except OSError:
            pass
    return out
total, todo = 0, [sys.argv[1]]
while todo:
    pid = todo.pop()
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        todo += children(pid)
    except OSError:
        pass
print(f"{total / 1024:.1f}")
EOF
}

# Runs the driver; prints "req/s|p50|p99" from its summary line.
drive() {
    local url=$1 token=$2 connections=$3 in_flight=$4
    local args=(load --url "$url" --connections "$connections" --in-flight "$in_flight" --duration "$duration" --warmup 1)
    [ -n "$token" ] && args+=(--token "$token")
    cargo bench --bench load --quiet -- "${args[@]}" 2>/dev/null | tail -1 |
        sed -E 's/^([0-9]+) req\/s, errors ([0-9]+), p50 ([0-9]+) µs, p99 ([0-9]+) µs.*/\1|\3|\4|\2/'
}

export WORK=$work

# Codex app-server.
codex_port=$(free_port)
codex_command=("${pin[@]}" "$codex" app-server --listen "ws://127.0.0.1:$codex_port")
codex_ready=$(readiness startup "$codex_port" "${codex_command[@]}")
codex_pid=$(readiness serve "$codex_port" "$work/codex.log" "${codex_command[@]}")
pids+=("$codex_pid")
sleep 1
codex_rss=$(tree_rss_mib "$codex_pid")

# authbridge.
bridge_port=$(free_port)
bridge_command=("${pin[@]}" target/release/authbridge serve --home "{home}" --listen "ws://127.0.0.1:$bridge_port")
bridge_ready=$(readiness startup "$bridge_port" "${bridge_command[@]}")
bridge_pid=$(readiness serve "$bridge_port" "$work/bridge.log" "${bridge_command[@]}")
pids+=("$bridge_pid")
sleep 1
bridge_rss=$(tree_rss_mib "$bridge_pid")
bridge_home=$(tr '\0' '\n' <"/proc/$bridge_pid/cmdline" | sed -n '/^--home$/{n;p}')
bridge_token=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["token"])' "$bridge_home/server.json")

echo "## authbridge vs Codex app-server $version (account/read, ${duration}s per run)"
echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "| connections × in flight | Codex req/s | authbridge req/s | speed-up | Codex p50 / p99 (µs) | authbridge p50 / p99 (µs) |"
echo "|---|---|---|---|---|---|"
for shape in "1 1" "4 16" "16 8"; do
    set -- $shape
    IFS='|' read -r c_rate c_p50 c_p99 c_err <<<"$(drive "ws://127.0.0.1:$codex_port/" "" "$1" "$2")"
    IFS='|' read -r b_rate b_p50 b_p99 b_err <<<"$(drive "ws://127.0.0.1:$bridge_port/" "$bridge_token" "$1" "$2")"
    if [ "$c_err" != 0 ] || [ "$b_err" != 0 ]; then
        echo "compare-codex: errors during the $1 x $2 run (Codex $c_err, authbridge $b_err)" >&2
        exit 1
    fi
    speedup=$(python3 -c "print(f'{$b_rate / $c_rate:.1f}×')")
    echo "| $1 × $2 | $c_rate | $b_rate | $speedup | $c_p50 / $c_p99 | $b_p50 / $b_p99 |"
done
echo
echo "| | Codex app-server $version | authbridge |"
echo "|---|---|---|"
echo "| process start → \`/readyz\` 200 (median of 5) | ${codex_ready} ms | ${bridge_ready} ms |"
echo "| idle RSS (process tree) | ${codex_rss} MiB | ${bridge_rss} MiB |"
