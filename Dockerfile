# syntax=docker/dockerfile:1
# Multi-stage build: dependencies are compiled in their own layer (dummy sources), so a
# change to src/ rebuilds only the crate. CI runs the same `cargo build --release --locked`.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
COPY config ./config
ARG REVISION=unknown
ENV GIT_REVISION=${REVISION}
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/healthimaging-exporter /usr/local/bin/healthimaging-exporter
COPY config/healthimaging-exporter.toml /etc/healthimaging-exporter/config.toml
USER nonroot:nonroot
EXPOSE 9712
ENTRYPOINT ["/usr/local/bin/healthimaging-exporter"]
CMD ["run", "--config", "/etc/healthimaging-exporter/config.toml"]
