# One image with both binaries: /credential-agent (the entrypoint, so the
# sidecar the webhook injects needs only args) and /pod-identity-webhook
# (the chart's Deployment sets it as command).
#
#   docker build -t <registry>/pod-identity:0.1.0 .
#   docker push <registry>/pod-identity:0.1.0
#   helm install pod-identity charts/pod-identity --set image.repository=<registry>/pod-identity
#
# Static musl binaries on distroless/static, running as the non-root user
# 65532. Multi-arch: docker buildx build --platform linux/amd64,linux/arm64
# (each platform builds natively for its own musl target).

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools cmake clang \
    && rm -rf /var/lib/apt/lists/*
ARG TARGETARCH
RUN case "$TARGETARCH" in \
      arm64) echo aarch64-unknown-linux-musl > /target ;; \
      *)     echo x86_64-unknown-linux-musl > /target ;; \
    esac && rustup target add "$(cat /target)"
WORKDIR /src
COPY . .
RUN cargo build --locked --release --target "$(cat /target)" \
      -p pod-identity-webhook -p credential-agent \
    && mkdir /out \
    && cp "target/$(cat /target)/release/pod-identity-webhook" \
          "target/$(cat /target)/release/credential-agent" /out/

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pod-identity-webhook /pod-identity-webhook
COPY --from=build /out/credential-agent /credential-agent
USER 65532:65532
ENTRYPOINT ["/credential-agent"]
