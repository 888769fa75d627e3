#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short while (60 s by default,
# FUZZ_SECONDS to change it) with its committed seeds and the dictionary.
# Fails when a target finds a failing input; all targets run either way, so
# one CI run shows every failure. `.ci/run` calls this; it also runs alone.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
toolchain=nightly

# cargo-fuzz needs a nightly compiler (sanitizer-coverage flags) and a C++
# compiler (libfuzzer-sys builds libFuzzer from source). Nothing else: with
# `-s none` no rustup component is needed.
if ! rustup toolchain list | grep -q "^${toolchain}"; then
    rustup toolchain install "$toolchain" --profile minimal
fi
command -v c++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# No sanitizer: ferry and the targets forbid `unsafe`, so AddressSanitizer
# would mostly make each run about five times slower. Debug assertions and
# overflow checks stay on (cargo-fuzz's default).
echo "== cargo fuzz build"
cargo "+${toolchain}" fuzz build -s none

# Longest input per target: two lines past MAX_LINE (4096) for the parser;
# past two names of 255 bytes for the names; room for long lines and
# pipelined uploads in a session; past the 16 KiB head limit for HTTP;
# a few replies with their data for the client; past the longest PROXY
# header taken (536 bytes) for proxy_header; a few WebDAV bodies (the
# parser is bounded by the body, 64 KiB in the server).
declare -A max_len=([proxy_header]=1200 [line_command]=9000 [names]=600 [session]=16384 [http_request]=20000 [client_replies]=4096 [tls_session]=20000 [webdav_xml]=8192)

failed=()
# A failing `cargo fuzz list` must fail the script, not fuzz nothing.
targets=$(cargo "+${toolchain}" fuzz list)
[[ -n "$targets" ]] || { echo "cargo fuzz list named no target" >&2; exit 1; }
for target in $targets; do
    echo "== fuzz ${target} for ${seconds}s"
    mkdir -p "fuzz/corpus/${target}"
    if ! cargo "+${toolchain}" fuzz run -s none "$target" \
        "fuzz/corpus/${target}" "fuzz/seeds/${target}" -- \
        -dict=fuzz/ferry.dict \
        -max_total_time="$seconds" \
        -max_len="${max_len[$target]:-4096}" \
        -use_value_profile=1 \
        -timeout=10 \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/, see fuzz/README.md)" >&2
    exit 1
fi
echo "== fuzzing found nothing"
