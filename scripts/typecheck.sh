#!/usr/bin/env bash
# The type check of www/ (scripts/typecheck.mjs: TypeScript `checkJs` over the JSDoc types, one
# program per environment, see tsconfig/), then the worker protocol's drift test
# (tests/types/protocol.test.mjs: a message field renamed on one side is a type error).
# Needs the npm devDependencies (typescript, @types/node: `npm ci`) and the wasm builds'
# declarations (./build.sh); exits non-zero on any type error, and says what is missing.
#   scripts/typecheck.sh        (npm run typecheck)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/tsc ] && [ -d node_modules/@types/node ] || npm ci --no-audit --no-fund
node scripts/typecheck.mjs
node --test-reporter=spec --test tests/types/protocol.test.mjs
