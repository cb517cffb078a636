#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ with cargo-fuzz (libFuzzer, AddressSanitizer)
# on the nightly toolchain, each until its time or its number of executions
# is reached, whichever comes first, and prints executions, time and crashes
# per target. Exit status 1 when any target crashed (its input is kept and
# named) or could not run.
#
#   scripts/fuzz.sh                     every target, 10 minutes or 1,000,000 executions each
#   scripts/fuzz.sh --seconds 60 jwt    one target, for a minute
#   scripts/fuzz.sh --brief             every target for 10 s, unoptimized build (the README's test command)
#   scripts/fuzz.sh --list              the targets
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs the
# pinned cargo-fuzz into the project's cache when it is missing. Corpora,
# crash inputs and the instrumented build live in the cache too (outside the
# repository), so later runs continue where earlier ones stopped. Each corpus
# starts from fuzz/seeds/<target> and the repository's fixtures.
# A crash becomes a regression test: add its input to the unit tests of the
# code it crashed (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(admission_review proxy_config compiler detect jwt authz convert inbound_http)

if [[ $(id -u) == 0 ]]; then
    cache=${PLEXUS_CACHE:-/var/cache/plexus}
else
    cache=${PLEXUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/plexus}
fi
dir="$cache/fuzz"
log() { printf '[fuzz] %s\n' "$*" >&2; }

seconds=600
runs=1000000
# --brief builds without optimizations (minutes less on a cold machine, for
# a run of seconds) and starts from the seeds alone: libFuzzer first replays
# its whole corpus, which long runs keep growing.
profile=()
brief=false
selected=()
while (($#)); do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --brief) seconds=10; runs=1000000; profile=(--dev); brief=true; shift ;;
        --list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) log "error: unknown option $1"; exit 2 ;;
        *) selected+=("$1"); shift ;;
    esac
done
((${#selected[@]})) || selected=("${TARGETS[@]}")
for target in "${selected[@]}"; do
    [[ " ${TARGETS[*]} " == *" $target "* ]] || { log "error: no target $target (--list)"; exit 2; }
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    log "no nightly toolchain: the fuzz targets need one (rustup toolchain install nightly)"
    exit 3
fi
tools="$dir/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [[ ! -x $tools/bin/cargo-fuzz ]]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools (once)"
    cargo install --quiet --locked --root "$tools" cargo-fuzz --version "$CARGO_FUZZ_VERSION" >&2
fi
export PATH="$tools/bin:$PATH"
# The instrumented build is kept with the corpora: a cold one takes minutes.
export CARGO_TARGET_DIR="$dir/target"

# Extra seed directories of a target: the repository's own fixtures.
fixtures() {
    case $1 in
        convert) echo cli/tests/fixtures/seed-manifests ;;
        compiler) echo cli/tests/fixtures/seed-manifests demo demo/routing operator/tests/golden/* ;;
    esac
}

log "building the targets (nightly, AddressSanitizer${profile:+, unoptimized})"
cargo +nightly fuzz build "${profile[@]}" --fuzz-dir fuzz >&2

status=0
results=()
for target in "${selected[@]}"; do
    corpus="$dir/corpus/$target"
    if $brief; then
        corpus=$(mktemp -d)
    fi
    artifacts="$dir/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    [[ -d fuzz/seeds/$target ]] && seeds+=("fuzz/seeds/$target")
    # shellcheck disable=SC2207
    seeds+=($(fixtures "$target"))
    output=$(mktemp)
    log "$target: up to ${seconds}s or $runs executions"
    started=$(date +%s)
    set +e
    cargo +nightly fuzz run "${profile[@]}" --fuzz-dir fuzz "$target" "$corpus" "${seeds[@]}" -- \
        -artifact_prefix="$artifacts/" -max_total_time="$seconds" -runs="$runs" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$output" 2>&1
    code=$?
    set -e
    elapsed=$(($(date +%s) - started))
    executions=$(awk '/stat::number_of_executed_units:/ {print $2}' "$output" | tail -n 1)
    # libFuzzer stops at the first crash (or leak, or timeout).
    crashes=$((code != 0))
    artifact=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$output" | tail -n 1)
    if ((code != 0)); then
        status=1
        tail -n 40 "$output" >&2
        [[ -n $artifact ]] && log "$target: the input that crashed it: $artifact"
    fi
    results+=("$(printf '%-17s %12s %8s %8s' "$target" "${executions:-?}" "${elapsed}s" "$crashes")")
    rm -f "$output"
    if $brief; then
        rm -rf "$corpus"
    fi
done

printf '\n%-17s %12s %8s %8s\n' target executions time crashes
printf '%s\n' "${results[@]}"
exit "$status"
