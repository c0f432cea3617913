# Multi-stage build of the demo server: a Swift toolchain image compiles a release binary with
# the Swift runtime linked in; the runtime image is Debian slim with only the C libraries the
# binary links (libargon2, libcrypt, librabbitmq) and curl for the api's health check.
#
# Needs BuildKit (the default builder of Docker 23 and later, and of `docker compose` v2; with
# Docker 20.10 set DOCKER_BUILDKIT=1) for the cache mounts: the build directory outlives the
# image, so after a change to Sources/ only what changed is compiled again. There is no
# `# syntax=` line on purpose: the builder's own Dockerfile frontend handles `RUN --mount`, and
# a `# syntax=` line would make BuildKit fetch one from a registry.

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libargon2-dev libcrypt-dev librabbitmq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# The dependencies first, in their own step: a change to the sources does not fetch them again.
# With a Package.resolved in the build context (SwiftPM writes one on the first build; the
# repository does not keep it) the versions are exactly those, and a Package.resolved that no
# longer matches Package.swift fails the build instead of being updated quietly; without one
# they are resolved afresh and the result is kept in the image (/usr/local/share/identity).
COPY Package.swift Package.resolve[d] ./
RUN --mount=type=cache,id=identity-swiftpm-build,target=/src/.build \
    --mount=type=cache,id=identity-swiftpm-cache,target=/root/.cache \
    if [ -f Package.resolved ]; then swift package resolve --force-resolved-versions; else swift package resolve; fi \
    && mkdir -p /out/share && cp Package.resolved /out/share/

COPY Sources ./Sources
COPY Tests ./Tests
COPY scripts/lib.sh scripts/symbol-order.txt ./scripts/
# The release flags of scripts/run and scripts/bench (scripts/lib.sh's release_flags): the Swift
# standard library linked in, no debug information, linked by lld with unused sections dropped,
# relative relocations packed (DT_RELR, glibc 2.36: bookworm), no symbol table for the dynamic
# linker and the functions a running server executes laid out together
# (scripts/symbol-order.txt): each of these lowers the resident memory of the idle server
# (Docs/performance.md, "Idle memory"). lib.sh is bash, so the step runs under bash whatever
# shell the builder uses. The binary and its resource bundles (OpenAPI document, SQL
# migrations) are copied out of the cached build directory.
RUN --mount=type=cache,id=identity-swiftpm-build,target=/src/.build \
    --mount=type=cache,id=identity-swiftpm-cache,target=/root/.cache \
    bash -euo pipefail -c '\
    . scripts/lib.sh; \
    release_flags; \
    case "${RELEASE_FLAGS[*]}" in *symbol-ordering-file*) ;; *) echo "the image needs lld and glibc 2.36: ${RELEASE_FLAGS[*]}"; exit 1;; esac; \
    swift build "${RELEASE_FLAGS[@]}" --product DemoServer; \
    bin="$(swift build "${RELEASE_FLAGS[@]}" --show-bin-path)"; \
    mkdir -p /out/bin; \
    cp "$bin/DemoServer" /out/bin/; \
    cp -R "$bin"/*.resources /out/bin/'

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libargon2-1 libcrypt1 librabbitmq4 ca-certificates curl tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --home-dir /srv/identity --create-home --shell /usr/sbin/nologin identity \
    && install -d -o identity -g identity /srv/identity/mail
COPY --from=build /out/bin/ /usr/local/bin/
# The dependency versions the binary was built with.
COPY --from=build /out/share/Package.resolved /usr/local/share/identity/Package.resolved
USER identity
WORKDIR /srv/identity
# MAIL_DIR: where the file mailer writes (a volume in docker-compose.yml). glibc's malloc keeps
# Argon2's 19 MiB blocks after the first hashes (~40 MiB resident) and reuses them: faster
# logins. MALLOC_MMAP_THRESHOLD_=131072 gives them back after each hash instead, for ~3 ms more
# per hash (Docs/performance.md, "Idle memory"; scripts/run sets it).
ENV HOST=0.0.0.0 PORT=8080 MAIL_DIR=/srv/identity/mail
EXPOSE 8080
ENTRYPOINT ["DemoServer"]
CMD ["serve"]
