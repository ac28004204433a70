# Sourced by the tests that run tools from the npm registry.
#   npm_tools SRC DEST [AFTER]: installs SRC/package.json + package-lock.json into DEST,
#   once and again when the lock changes, then runs the command AFTER (if given) in
#   DEST; one installer at a time (tests may start together under ctest -j).
#   Exits 77 (a skip for CTest) when node/npm or the registry are missing.
npm_tools() {
  local src=$1 dest=$2 after=${3:-true}
  command -v node >/dev/null && command -v npm >/dev/null || { echo "node/npm not installed: skipping"; exit 77; }
  mkdir -p "$dest"
  exec 9>"$dest/.lock"
  flock 9
  # The stamp is written only after a complete install: an interrupted one is redone.
  if ! cmp -s "$src/package-lock.json" "$dest/.installed-lock"; then
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm registry unreachable: skipping"; exit 77; }
    (cd "$dest" && $after)
    cp "$src/package-lock.json" "$dest/.installed-lock"
  fi
  flock -u 9
}
