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

# release_flags: sets RELEASE_FLAGS, the release build flags of scripts/run, scripts/bench and
# the Dockerfile: the Swift standard library linked in, no debug information, unused sections
# dropped and no symbol table for the dynamic linker; with the toolchain's lld, relative
# relocations packed (DT_RELR, which needs glibc 2.36 to run) and the functions a running
# server executes laid out together, in the order of scripts/symbol-order.txt. Each lowers the
# idle server's resident memory (Docs/performance.md, "Idle memory"). SwiftPM links again when
# a link flag changes but not when a file a flag names does, so the list is passed as a copy
# named after its content (in ~/.cache/identity).
release_flags() {
    RELEASE_FLAGS=(-c release --static-swift-stdlib -Xswiftc -gnone -Xlinker --gc-sections -Xlinker --no-export-dynamic)
    local glibc order cache digest
    glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
    order="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/symbol-order.txt"
    if [ -x "$(dirname "$(readlink -f "$(command -v swift)")")/ld.lld" ] \
        && printf '2.36\n%s\n' "${glibc:-0}" | sort -V -C; then
        RELEASE_FLAGS+=(-Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs)
        if [ -f "$order" ]; then
            cache="${XDG_CACHE_HOME:-$HOME/.cache}/identity"
            digest="$(sha256sum "$order" | cut -c1-16)"
            if [ ! -f "$cache/symbol-order-$digest.txt" ]; then
                mkdir -p "$cache"
                cp "$order" "$cache/symbol-order-$digest.txt.$$" && mv "$cache/symbol-order-$digest.txt.$$" "$cache/symbol-order-$digest.txt"
            fi
            RELEASE_FLAGS+=(-Xlinker "--symbol-ordering-file=$cache/symbol-order-$digest.txt" -Xlinker --no-warn-symbol-ordering)
        fi
    fi
}
