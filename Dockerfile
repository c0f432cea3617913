# syntax=docker/dockerfile:1
# Multi-stage build of the demo server: a Swift toolchain image compiles a release binary with
# the Swift runtime linked in; the runtime image is Debian slim with only the C libraries the
# binary links (libargon2, libcrypt, librabbitmq) and curl for health checks.

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libargon2-dev libcrypt-dev librabbitmq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product DemoServer --static-swift-stdlib \
    && mkdir -p /out \
    && cp "$(swift build -c release --show-bin-path)/DemoServer" /out/ \
    && cp -R "$(swift build -c release --show-bin-path)"/*.resources /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libargon2-1 libcrypt1 librabbitmq4 ca-certificates curl tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv/identity --create-home identity
# The resource bundles (OpenAPI document, SQL migrations) sit next to the binary.
COPY --from=build /out/ /usr/local/bin/
USER identity
WORKDIR /srv/identity
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
ENTRYPOINT ["DemoServer"]
CMD ["serve"]
