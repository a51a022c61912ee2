# syntax=docker/dockerfile:1
# The two Sluice images, sluice-operator and sluice-broker: static musl binaries on
# distroless/static, running as a non-root user. Pick the image with --target; the toolchain
# stage is shared, so building the second image reuses it.
#
# Build from the repository root (the Cargo workspace is the build context):
#   docker build --target operator -t sluice-operator:dev .
#   docker build --target broker   -t sluice-broker:dev .
# The same file builds linux/amd64 and linux/arm64 (each natively, e.g. with buildx).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS toolchain
# musl-tools: C compiler for the crates with C parts (ring, zstd, lz4).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
# C parts are compiled for the musl target with musl-gcc (cc-rs would look for
# aarch64-linux-musl-gcc on arm64, which musl-tools does not ship).
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
# build-static PACKAGE: the binary of the same name, alone (so the features of one image's
# dependencies are not unified with the other's), into /out. The target dir lives in a cache
# mount, so the binary is copied out in the same step.
COPY --chmod=0755 <<'EOF' /usr/local/bin/build-static
#!/bin/sh
set -eu
target="$(uname -m)-unknown-linux-musl"
cargo build --release --locked --target "$target" -p "$1" --bin "$1"
install -D -m 0755 "target/$target/release/$1" "/out/$1"
EOF
WORKDIR /src
COPY . .

FROM toolchain AS operator-build
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    build-static sluice-operator

FROM toolchain AS broker-build
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    build-static sluice-broker \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS operator
COPY --from=operator-build /out/sluice-operator /sluice-operator
USER 65532:65532
# /healthz, /readyz, /metrics
EXPOSE 8080
ENTRYPOINT ["/sluice-operator"]
CMD ["run"]

FROM gcr.io/distroless/static-debian12:nonroot AS broker
COPY --from=broker-build /out/sluice-broker /sluice-broker
# Default --data-dir; in Kubernetes a PersistentVolumeClaim is mounted here.
COPY --from=broker-build --chown=65532:65532 /out/data /var/lib/sluice
USER 65532:65532
# Kafka listener, HTTP (/healthz, /readyz, /metrics)
EXPOSE 9092 8080
ENTRYPOINT ["/sluice-broker"]
