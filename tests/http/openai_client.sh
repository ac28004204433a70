#!/usr/bin/env bash
# The official openai npm client against a coordinator and a worker of this build
# serving the bundled model (tests/http/openai_client.test.mjs). The client is
# installed from the npm registry once into build/http-test-tools; exits 77 (a skip
# for CTest) when node/npm or the registry are missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/build/http-test-tools"
source "$root/tests/npm_tools.sh"
npm_tools "$root/tests/http" "$tools"

source "$root/tests/http/serve_bundled.sh" "$1"
# The test file imports "openai" from the tools' node_modules.
cp "$root/tests/http/openai_client.test.mjs" "$tools/"
TESSERA_HTTP_URL="$URL/v1" node --test "$tools/openai_client.test.mjs"
