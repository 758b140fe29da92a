#!/usr/bin/env bash
# Regenerates tests/conformance-passing.txt (the conformance ratchet) from the
# current engine; run after `cargo build -p policyctl`, from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
{
  echo "# Conformance cases that pass: opa-v1/<file>#<index> (../shared/conformance/opa-v1) and"
  echo "# regressions/<file>#<index> (tests/conformance/regressions), each with its note."
  echo "# A listed case that fails fails the build (cli/tests/conformance_command.rs)."
  echo "# Regenerate after fixes: tests/conformance/update-ratchet.sh"
  for pair in "opa-v1 ../shared/conformance/opa-v1" "regressions tests/conformance/regressions"; do
    set -- $pair
    ./target/debug/policyctl conformance -f json "$2" 2>/dev/null | python3 -c "
import json,sys
d=json.load(sys.stdin)
for c in d['cases']:
    if c['passed']: print('$1/'+c['id']+'\t'+c['note'].replace('\t',' ').replace('\n',' '))
" || true
  done
} > tests/conformance-passing.txt
grep -c "^opa-v1/" tests/conformance-passing.txt; grep -c "^regressions/" tests/conformance-passing.txt
