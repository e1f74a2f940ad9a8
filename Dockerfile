# syntax=docker/dockerfile:1
# tenancy-operator image: a static (musl) binary on distroless/static, running as 65532.
#
#   docker build -t tenancy-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/tenancy-operator:0.1.0 --push .
#
# The builder stage runs on each target platform (no cross-compiler needed); BuildKit cache
# mounts keep the cargo registry and target folder between builds.

FROM rust:1.95 AS builder
ARG TARGETARCH
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /build
# Only what cargo needs (see .dockerignore): manifest, lock file, sources.
COPY . .
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=thin \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    target="$(cat /rust-target)" \
 && cargo build --release --locked --bin tenancy-operator --target "$target" \
 && cp "target/$target/release/tenancy-operator" /tenancy-operator

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="tenancy-operator" \
      org.opencontainers.image.description="Customers, projects and expiring memberships for any Kubernetes cluster" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /tenancy-operator /tenancy-operator
USER 65532:65532
EXPOSE 8080 8443
ENTRYPOINT ["/tenancy-operator"]
CMD ["run"]
