# The operator's image, for your CI: a static (musl) release binary on an empty base,
# run as a numeric non-root user. Nothing else is needed at run time: no shell, no libc;
# only the CA bundle, for the image preflight against HTTPS registries (the cluster's CA
# comes from the service account).
#
#   docker build -t <your-registry>/datajob-operator:0.1.0 .
#
# `make image` builds the same image as an OCI archive without a container daemon
# (target/image/datajob-operator.tar), from the same release build.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION} AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY crates crates
RUN CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target x86_64-unknown-linux-musl --bin datajob-operator

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/datajob-operator /datajob-operator
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/datajob-operator"]
