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
# BINARIES=prebuilt skips the builder and takes hub, producer and consumer from the context root:
#   podman build --target hub --build-arg BINARIES=prebuilt -f Dockerfile <dir with the 3 binaries>
# The runtime holds the binary, its shared libraries and CA certificates, nothing else (no shell).
ARG RUST_TAG=1-slim-bookworm
ARG BASE_TAG=bookworm-slim
ARG BINARIES=build

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

# Where the binaries come from: `build` (the default) compiles them above; `prebuilt` takes
# already-built Linux binaries named hub, producer and consumer from the root of the build context
# (the test suite passes the ones it has just built, so the workspace is not compiled twice).
FROM scratch AS prebuilt
COPY hub producer consumer /out/

# hadolint ignore=DL3006
FROM ${BINARIES} AS binaries

# The runtime's file system, distroless-style: the binaries' shared libraries (found with ldd),
# CA certificates, a passwd/group naming the non-root user, /tmp and the hub's state directory.
FROM debian:${BASE_TAG} AS rootfs
COPY --from=binaries /out/ /out/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN set -eu; \
    if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*; \
    fi; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/var/lib/hub /rootfs/usr/local/bin; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    for lib in $(for bin in /out/*; do ldd "$bin"; done | grep -o '/[^ ]*' | sort -u); do cp --parents -L "$lib" /rootfs; done; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nmoduleuser:x:10001:10001::/nonexistent:/sbin/nologin\n' > /rootfs/etc/passwd; \
    printf 'root:x:0:\nmoduleuser:x:10001:\n' > /rootfs/etc/group; \
    chmod 1777 /rootfs/tmp; \
    chown 10001:10001 /rootfs/var/lib/hub

FROM scratch AS runtime
ARG CONFIG=release
COPY --from=rootfs /rootfs/ /
# Explicitly: COPY does not keep ownership on every builder.
COPY --from=rootfs --chown=10001:10001 /rootfs/var/lib/hub /var/lib/hub
LABEL io.iotedge.method-vs-message.config="${CONFIG}"
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
# Each target's HEALTHCHECK: `<binary> healthcheck` asks this process's /healthz on its metrics
# port (for the modules: the watchdog's state). IoT Edge ignores Docker health status; on a device
# the modules' watchdog (WATCHDOG_TIMEOUT) is what restarts a hung module. Compose waits on it.

FROM runtime AS hub
LABEL org.opencontainers.image.title="hub" \
      org.opencontainers.image.description="The local edgeHub stand-in: MQTT/TLS 8883, HTTPS direct methods 443, /metrics 9600."
COPY --from=binaries /out/hub /usr/local/bin/hub
# 8883 MQTT over TLS, 443 HTTPS direct methods (docker-compose.yml uses 8443: non-root), 9600 /metrics
EXPOSE 8883 443 8443 9600
ENTRYPOINT ["/usr/local/bin/hub"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["/usr/local/bin/hub", "healthcheck"]
# State (generated CA, identities, endpoints.json) lives in /var/lib/hub: mount a volume there.
CMD ["--deployment", "/etc/hub/deployment.json", "--state-dir", "/var/lib/hub", "--bind", "0.0.0.0"]

FROM runtime AS producer
LABEL org.opencontainers.image.title="producer" \
      org.opencontainers.image.description="IoT Edge module: answers GetTimeMethod and GetTimeMessage with the current UTC time; /metrics on 9600."
COPY --from=binaries /out/producer /usr/local/bin/producer
# /metrics (METRICS_ADDR, default 0.0.0.0:9600)
EXPOSE 9600
ENTRYPOINT ["/usr/local/bin/producer"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["/usr/local/bin/producer", "healthcheck"]

FROM runtime AS consumer
LABEL org.opencontainers.image.title="consumer" \
      org.opencontainers.image.description="IoT Edge module: measures a direct method against a message round trip to the producer; /metrics on 9600."
COPY --from=binaries /out/consumer /usr/local/bin/consumer
# /metrics (METRICS_ADDR, default 0.0.0.0:9600)
EXPOSE 9600
ENTRYPOINT ["/usr/local/bin/consumer"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["/usr/local/bin/consumer", "healthcheck"]
