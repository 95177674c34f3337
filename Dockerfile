# The images of `vireo` (control plane, CLI) and `vireo-proxy`, built as the tested release
# binaries are: `cargo build --release --locked` with the workspace's release profile (fat LTO,
# one codegen unit). One image holds both; the Deployment or sidecar picks the command.
#
#   docker build -t vireo:0.1.0 .
#   docker build --target init -t vireo-init:0.1.0 .   (see below)
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vireo-control -p vireo-proxy \
 && install -D -m 0755 target/release/vireo /out/vireo \
 && install -D -m 0755 target/release/vireo-proxy /out/vireo-proxy

# Transparent interception's init step (`vireo-proxy iptables`, the injector's vireo-init
# container): the proxy binary beside Debian's iptables. Build it with
#   docker build --target init -t vireo-init:0.1.0 .
FROM debian:bookworm-slim AS init
RUN apt-get update && apt-get install -y --no-install-recommends iptables && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/vireo-proxy /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/vireo-proxy", "iptables"]

# The default target. glibc and CA certificates, no shell, uid 65532 (the manifests' runAsUser).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/vireo /out/vireo-proxy /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vireo"]
