#!/usr/bin/env bash
# Builds, without any image registry, the two base images the Dockerfile takes
# as build arguments, and prints their names:
#   - RUST_IMAGE: Debian bookworm (debootstrap) with this machine's Rust
#     toolchain (which already has wasm32-wasip2) and a C compiler, laid out as
#     the official rust image is (RUSTUP_HOME, CARGO_HOME, PATH);
#   - RUNTIME_IMAGE: distroless-style, just glibc, libgcc_s and a passwd entry
#     for the nonroot user 65532, as gcr.io/distroless/cc has;
#   - the load balancer's BASE_IMAGE: plain Debian bookworm (minbase), as
#     debian:bookworm-slim is.
# Images that already exist are reused. Needs root, debootstrap (installed from
# Debian's packages if missing) and a Docker engine.
set -euo pipefail

rust_image=replica-test/rust:1.95
runtime_image=replica-test/runtime:cc
debian_image=replica-test/debian:bookworm
work=${TMPDIR:-/tmp}/replica-bases
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=$work/rootfs

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$rust_image" || ! have "$runtime_image" || ! have "$debian_image"; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }

  if [ ! -x "$rootfs/usr/bin/gcc" ]; then
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
      "$suite" "$rootfs" "$mirror" >&2
  fi
fi

if ! have "$rust_image"; then
  toolchain=$(rustc --print sysroot)
  rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  rm -rf "$rootfs/usr/local/rustup" "$rootfs/usr/local/cargo"
  mkdir -p "$rootfs/usr/local/rustup/toolchains" "$rootfs/usr/local/cargo/bin"
  # The toolchain without its documentation, under the name rustup knows it by.
  name=$(basename "$toolchain")
  tar -C "$(dirname "$toolchain")" --exclude="$name/share/doc" -cf - "$name" \
    | tar -C "$rootfs/usr/local/rustup/toolchains" -xf -
  printf 'version = "12"\ndefault_toolchain = "%s"\n' "$name" > "$rootfs/usr/local/rustup/settings.toml"
  cp "$cargo_home/bin/rustup" "$rootfs/usr/local/cargo/bin/rustup"
  for proxy in cargo rustc rustdoc; do
    ln -sf rustup "$rootfs/usr/local/cargo/bin/$proxy"
  done
  # The certificate authorities this machine trusts, so that cargo in the
  # builder reaches crates.io the way this machine does.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$rootfs" -cf - . | docker import \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$rust_image" >&2
fi

if ! have "$runtime_image"; then
  slim=$work/runtime
  rm -rf "$slim"
  mkdir -p "$slim/lib/x86_64-linux-gnu" "$slim/lib64" "$slim/etc" "$slim/tmp"
  for lib in libc.so.6 libm.so.6 libgcc_s.so.1; do
    cp -L "$rootfs/lib/x86_64-linux-gnu/$lib" "$slim/lib/x86_64-linux-gnu/"
  done
  cp -L "$rootfs/lib64/ld-linux-x86-64.so.2" "$slim/lib64/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$slim/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$slim/etc/group"
  chmod 1777 "$slim/tmp"
  tar -C "$slim" -cf - . | docker import - "$runtime_image" >&2
fi

if ! have "$debian_image"; then
  # The rootfs without the Rust toolchain the rust image added to it.
  tar -C "$rootfs" --exclude=./usr/local/rustup --exclude=./usr/local/cargo -cf - . \
    | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$debian_image" >&2
fi

echo "$rust_image $runtime_image $debian_image"
