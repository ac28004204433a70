#!/usr/bin/env bash
# The offline image: FROM scratch, holding this build's binaries, every shared library
# they link (found with ldd, copied to the same paths), the dynamic loader and the
# bundled models. Needs no registry: only podman (or buildah) from Debian's packages.
#
#   deploy/image/build-local.sh [TAG]        (default localhost/tessera:dev)
#
# The image has no shell and no package manager, only what the three binaries need.
# For real clusters use deploy/Containerfile (multi-stage, debian:12-slim).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-localhost/tessera:dev}"
ctx="$root/build/image"
bins=(tessera tessera-coordinator tessera-worker tessera-bench)
for b in "${bins[@]}"; do [ -x "$root/build/bin/$b" ] || "$root/scripts/build.sh"; done

rm -rf "$ctx" && mkdir -p "$ctx/rootfs/opt/tessera/bin" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
for b in "${bins[@]}"; do cp "$root/build/bin/$b" "$ctx/rootfs/opt/tessera/bin/"; done
# "libfoo.so => /usr/lib/.../libfoo.so (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
for b in "${bins[@]}"; do ldd "$root/build/bin/$b"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
  while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
cp -r "$root/assets/models" "$ctx/rootfs/opt/tessera/models"
cp "$root/LICENSE" "$ctx/rootfs/opt/tessera/LICENSE"
cat > "$ctx/Containerfile" <<'CF'
FROM scratch
COPY rootfs/ /
USER 65532:65532
EXPOSE 50051 50061 50062
ENTRYPOINT ["/opt/tessera/bin/tessera-coordinator"]
CF
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/deploy/image/containers.conf}"
if command -v podman >/dev/null; then
  podman build --quiet -t "$tag" -f "$ctx/Containerfile" "$ctx"
elif command -v buildah >/dev/null; then
  buildah bud --quiet -t "$tag" -f "$ctx/Containerfile" "$ctx"
else
  echo "build-local: needs podman or buildah (apt-get install podman)" >&2
  exit 1
fi
echo "built $tag ($(du -sh "$ctx/rootfs" | cut -f1) unpacked)"
