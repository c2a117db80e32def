# syntax=docker/dockerfile:1
# One build for the three images: the hub (local edgeHub stand-in), the producer and the consumer
# modules. One builder stage compiles all three binaries once (stripped: profile `dist`); each image
# is a target that copies its binary onto a shared non-root runtime stage. From the repository root:
#   docker build --target producer -t producer:latest .
#   docker build --target consumer -t consumer:debug --build-arg CONFIG=debug .
#   docker buildx build --target hub --platform linux/amd64,linux/arm64,linux/arm/v7 -t <registry>/hub:latest --push .
# Other platforms build natively in their own platform's rust image (QEMU emulation under buildx),
# so no cross toolchain is needed. BASE_TAG picks the Debian runtime tag (default bookworm-slim),
# RUST_TAG the builder tag; both images are official multi-arch images (amd64, arm64v8, arm32v7).
ARG RUST_TAG=1-slim-bookworm
ARG BASE_TAG=bookworm-slim

FROM rust:${RUST_TAG} AS build
ARG CONFIG=release
ARG TARGETARCH
ARG TARGETVARIANT
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# cmake: aws-lc-sys falls back to its CMake build on targets where its cc build is not available.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=cargo-registry-${TARGETARCH}${TARGETVARIANT},target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=cargo-target-${TARGETARCH}${TARGETVARIANT},target=/src/target,sharing=locked \
    set -eu; \
    case "${CONFIG,,}" in \
      release) profile=dist ;; \
      debug) profile=dev ;; \
      *) echo "CONFIG must be release or debug, not '$CONFIG'" >&2; exit 1 ;; \
    esac; \
    cargo build --locked --profile "$profile" -p hub --bin hub -p producer --bin producer -p consumer --bin consumer; \
    dir=$([ "$profile" = dev ] && echo debug || echo "$profile"); \
    for bin in hub producer consumer; do install -D -m 0755 "target/$dir/$bin" "/out/$bin"; done

FROM debian:${BASE_TAG} AS runtime
ARG CONFIG=release
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 moduleuser \
 && useradd --system --uid 10001 --gid moduleuser --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin moduleuser \
 && install -d -o moduleuser -g moduleuser -m 0755 /var/lib/hub
LABEL io.iotedge.method-vs-message.config="${CONFIG}"
USER 10001:10001
# Healthy when this process's /metrics answers 200; no curl/wget in the image, so bash's /dev/tcp.
# Port: HEALTHCHECK_PORT, else HUB_METRICS_PORT, else METRICS_ADDR's port (default 9600).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "p=${HEALTHCHECK_PORT:-${HUB_METRICS_PORT:-}}; [ -n \"$p\" ] || { a=${METRICS_ADDR:-0.0.0.0:9600}; p=${a##*:}; }; exec 3<>\"/dev/tcp/127.0.0.1/$p\" && printf 'GET /metrics HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && IFS= read -r -t 5 s <&3 && [[ $s == \"HTTP/1.\"?\" 200\"* ]]"]

FROM runtime AS hub
LABEL org.opencontainers.image.title="hub" \
      org.opencontainers.image.description="The local edgeHub stand-in: MQTT/TLS 8883, HTTPS direct methods 443, /metrics 9600."
COPY --from=build /out/hub /usr/local/bin/hub
# 8883 MQTT over TLS, 443 HTTPS direct methods (docker-compose.yml uses 8443: non-root), 9600 /metrics
EXPOSE 8883 443 8443 9600
ENTRYPOINT ["/usr/local/bin/hub"]
# State (generated CA, identities, endpoints.json) lives in /var/lib/hub: mount a volume there.
CMD ["--deployment", "/etc/hub/deployment.json", "--state-dir", "/var/lib/hub", "--bind", "0.0.0.0"]

FROM runtime AS producer
LABEL org.opencontainers.image.title="producer" \
      org.opencontainers.image.description="IoT Edge module: answers GetTimeMethod and GetTimeMessage with the current UTC time; /metrics on 9600."
COPY --from=build /out/producer /usr/local/bin/producer
# /metrics (METRICS_ADDR, default 0.0.0.0:9600)
EXPOSE 9600
ENTRYPOINT ["/usr/local/bin/producer"]

FROM runtime AS consumer
LABEL org.opencontainers.image.title="consumer" \
      org.opencontainers.image.description="IoT Edge module: measures a direct method against a message round trip to the producer; /metrics on 9600."
COPY --from=build /out/consumer /usr/local/bin/consumer
# /metrics (METRICS_ADDR, default 0.0.0.0:9600)
EXPOSE 9600
ENTRYPOINT ["/usr/local/bin/consumer"]
