# Shared helpers for the scripts in this folder. Source it; do not run it.

# Installs the Debian packages given as arguments that are not installed yet.
install_missing() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints a TCP port on 127.0.0.1 that is free right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# The release build flags of scripts/run, scripts/bench and the Dockerfile: the Swift standard
# library linked in, no debug information, unused sections dropped and no symbol table for the
# dynamic linker; with the toolchain's lld, relative relocations packed (DT_RELR, which needs
# glibc 2.36 to run) and the functions a running server executes laid out together, in the order
# of scripts/symbol-order.txt. Each lowers the idle server's resident memory
# (Docs/performance.md, "Idle memory").
release_flags() {
    local flags="-c release --static-swift-stdlib -Xswiftc -gnone -Xlinker --gc-sections -Xlinker --no-export-dynamic"
    local glibc; glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
    local order; order="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/symbol-order.txt"
    if [ -x "$(dirname "$(readlink -f "$(command -v swift)")")/ld.lld" ] \
        && printf '2.36\n%s\n' "${glibc:-0}" | sort -V -C; then
        flags="$flags -Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs"
        [ -f "$order" ] && flags="$flags -Xlinker --symbol-ordering-file=$order -Xlinker --no-warn-symbol-ordering"
    fi
    echo "$flags"
}

# forget_stale_links EXECUTABLE...: SwiftPM does not know scripts/symbol-order.txt is an input of
# the link, so an executable linked before the file last changed is removed to be linked again.
forget_stale_links() {
    local order; order="$(dirname "${BASH_SOURCE[0]}")/symbol-order.txt"
    for executable in "$@"; do
        if [ -f "$order" ] && [ -e "$executable" ] && [ "$order" -nt "$executable" ]; then rm -f "$executable"; fi
    done
    return 0
}
