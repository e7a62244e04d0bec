# The replica server as a container image:
#   docker build -t replica .
#   docker run -e SERVER_ID=1 -p 5000:5000 replica
#
# Both base images are build arguments, so that a machine without a registry
# can build them locally and pass them in; with registry access the defaults
# work as they are.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
# make, for jemalloc (the host's allocator), which the slim Rust images lack.
# Debian's, whatever its point release: pinned by the suite.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip2
WORKDIR /src

# Dependencies first, on stub sources: this layer is rebuilt only when a
# manifest or the lock file changes, not when the code does.
COPY Cargo.toml Cargo.lock ./
COPY config/Cargo.toml config/
COPY host/Cargo.toml host/
COPY guest/p2/Cargo.toml guest/p2/
COPY guest/p3/Cargo.toml guest/p3/
COPY guest/routes/Cargo.toml guest/routes/
COPY test-guests/faulty/Cargo.toml test-guests/faulty/
COPY test-guests/faulty-p3/Cargo.toml test-guests/faulty-p3/
COPY test-guests/stateful/Cargo.toml test-guests/stateful/
COPY bench/native/Cargo.toml bench/native/
RUN for crate in config host guest/p2 guest/p3 guest/routes test-guests/faulty test-guests/faulty-p3 \
                 test-guests/stateful; do \
        mkdir -p $crate/src && touch $crate/src/lib.rs; \
    done \
 && mkdir -p bench/native/src host/tests \
 && echo 'fn main() {}' > host/src/main.rs \
 # The test targets host/Cargo.toml names (its [[test]] names, the only
 # names there without a hyphen) must exist for it to parse.
 && sed -n 's/^name = "\([a-z0-9_]*\)"$/host\/tests\/\1.rs/p' host/Cargo.toml > /tmp/test-targets \
 && xargs touch < /tmp/test-targets \
 && echo 'fn main() {}' > bench/native/src/main.rs \
 && cargo build --release --locked -p replica-host \
 && cargo build --profile guest --locked --target wasm32-wasip2 -p replica-guest -p replica-guest-p3

COPY . .
# Newer than the stubs, so cargo rebuilds our crates (and only them).
RUN touch config/src/lib.rs host/src/lib.rs host/src/main.rs guest/p2/src/lib.rs \
        guest/p3/src/lib.rs guest/routes/src/lib.rs \
 && cargo build --release --locked -p replica-host \
 && cargo build --profile guest --locked --target wasm32-wasip2 -p replica-guest -p replica-guest-p3 \
 && mkdir -p /out/app \
 && cp target/release/replica-host /out/replica-host \
 # Symbols are a quarter of the binary; guest traps are reported with the
 # guest's own names, so the host does not need them.
 && strip /out/replica-host \
 && cp target/wasm32-wasip2/guest/replica_guest.wasm /out/app/replica.wasm \
 # A copy in a folder of its own, for a volume a fleet upgrades by hot swap
 # (compose.yaml: REPLICA_COMPONENT=/app/guest/replica.wasm).
 && mkdir -p /out/app/guest \
 && cp target/wasm32-wasip2/guest/replica_guest.wasm /out/app/guest/replica.wasm \
 # The same routes as a wasi:http 0.3 component, to pick with
 # REPLICA_COMPONENT=/app/replica-p3.wasm.
 && cp target/wasm32-wasip2/guest/replica_guest_p3.wasm /out/app/replica-p3.wasm \
 # Precompiled into the image's compile cache for this host's engine: the
 # container starts without compiling. A different CPU or settings at run
 # time only costs one compile.
 && /out/replica-host compile /out/app/replica.wasm --cache-dir /out/app/cache \
 && /out/replica-host compile /out/app/replica-p3.wasm --cache-dir /out/app/cache

FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/replica-host /usr/local/bin/replica-host
# Owned by the unprivileged user, so that the cache can take a recompile.
COPY --from=builder --chown=65532:65532 /out/app /app
# Swap the guest without rebuilding: mount another component over
# /app/replica.wasm, or point REPLICA_COMPONENT at a mounted file.
ENV REPLICA_COMPONENT=/app/replica.wasm \
    REPLICA_CACHE_DIR=/app/cache \
    REPLICA_ADDR=0.0.0.0:5000
USER 65532:65532
EXPOSE 5000
# The host probes itself: the image needs no curl and no shell.
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 \
    CMD ["/usr/local/bin/replica-host", "probe"]
ENTRYPOINT ["/usr/local/bin/replica-host"]
