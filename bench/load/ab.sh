#!/usr/bin/env bash
# Paired comparison of two builds with the load harness (run.sh): one round
# of build A, then one of build B, repeated --pairs times, each round with
# its own no-op baseline. On these shared machines the ratios drift by
# several percent between runs minutes apart, more than most changes move
# them; alternating the builds puts both under the same drift, and the
# per-pair difference B − A shows the change.
#
#   bench/load/ab.sh --a DIR_A --b DIR_B [--pairs 4] [run.sh options...]
#
# DIR_A and DIR_B are cargo target directories (the binaries in
# DIR/release: policy-kernel, policy-agent, noop_extproc, upstream, and
# policy-journal and policyctl for the journal setup, which run.sh measures
# unless --setups leaves it out), e.g.
#
#   cargo build --release -p policy-kernel -p policy-agent -p policy-bench --bins
#   mkdir -p /tmp/a/release && cp target/release/{policy-kernel,policy-agent,noop_extproc,upstream} /tmp/a/release/
#   # change, build again, copy to /tmp/b/release
#   bench/load/ab.sh --a /tmp/a --b /tmp/b --pin --setups "embedded kernel" --duration 8s
#
# Prints, per pair and setup, the req/s, p50 and p99 ratios to the no-op
# and the ext_proc side's CPU µs per request of A and B, then the medians
# over the pairs of each and of the differences B − A. Other options go to
# run.sh as they are (--rounds and --no-build are set here).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
A=""
B=""
PAIRS=4
PASS=()
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    --pairs) PAIRS=$2; shift 2 ;;
    --rounds|--no-build) echo "ab.sh: $1 is set here" >&2; exit 2 ;;
    -h|--help) usage; exit 0 ;;
    *) PASS+=("$1"); shift ;;
  esac
done
[[ -n $A && -n $B ]] || { usage >&2; exit 2; }
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "ab.sh: --pairs must be a positive integer" >&2; exit 2; }
NEED=(policy-kernel policy-agent noop_extproc upstream)
setups="noop embedded kernel journal"
for ((k = 0; k < ${#PASS[@]}; k++)); do
  [[ ${PASS[k]} == --setups ]] && setups=${PASS[k + 1]:-}
done
[[ " $setups " == *" journal "* ]] && NEED+=(policy-journal policyctl)
for dir in "$A" "$B"; do
  for bin in "${NEED[@]}"; do
    [[ -x $dir/release/$bin ]] || { echo "ab.sh: $dir/release/$bin not found (build it and copy it there)" >&2; exit 2; }
  done
done

OUT=$(mktemp -d "${TMPDIR:-/tmp}/policy-ab.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

# One line per setup of a run.sh report: "setup req_ratio p50_ratio p99_ratio cpu".
extract() {
  awk '
    $1 == 1 && $4 == "us" && $5 == "=" { cpu[$2] = $6; next }
    $1 == 1 && $2 != "no-op" && $NF ~ /^non-2xx=/ { setup = $2; order[++n] = setup; next }
    $1 == 1 && $2 == "ratio" && setup != "" {
      r = $5; p50 = $6; p99 = $7
      gsub(/x/, "", r); gsub(/x/, "", p50); gsub(/x/, "", p99)
      line[setup] = setup " " r " " p50 " " p99
      setup = ""
    }
    END { for (i = 1; i <= n; i++) print line[order[i]], cpu[order[i]] }
  ' "$1"
}

for ((i = 1; i <= PAIRS; i++)); do
  for side in a b; do
    dir=$A
    [[ $side == b ]] && dir=$B
    if ! CARGO_TARGET_DIR=$dir "$HERE/run.sh" --no-build --rounds 1 "${PASS[@]}" >"$OUT/$side.$i.txt" 2>"$OUT/$side.$i.log"; then
      echo "ab.sh: run $side $i failed:" >&2
      tail -20 "$OUT/$side.$i.log" >&2
      exit 1
    fi
    extract "$OUT/$side.$i.txt" | sed "s/^/$i $side /" >>"$OUT/all"
  done
  echo "pair $i done" >&2
done

python3 - "$OUT/all" "$A" "$B" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print(f"A = {sys.argv[2]}, B = {sys.argv[3]}; ratios to the no-op of the same round")
setups = []
for r in rows:
    if r[2] not in setups:
        setups.append(r[2])
fields = ["req/s", "p50", "p99", "cpu µs"]
for s in setups:
    print(f"\n{s}:")
    print(f"{'pair':>4}  " + "  ".join(f"{f + ' A':>9} {f + ' B':>9} {'B-A':>7}" for f in fields))
    diffs = {f: [] for f in fields}
    vals = {(f, side): [] for f in fields for side in "ab"}
    pairs = sorted({int(r[0]) for r in rows if r[2] == s})
    for p in pairs:
        a = next((r for r in rows if int(r[0]) == p and r[1] == "a" and r[2] == s), None)
        b = next((r for r in rows if int(r[0]) == p and r[1] == "b" and r[2] == s), None)
        if a is None or b is None:
            continue
        cells = []
        for k, f in enumerate(fields):
            x, y = float(a[3 + k]), float(b[3 + k])
            vals[(f, "a")].append(x)
            vals[(f, "b")].append(y)
            diffs[f].append(y - x)
            cells.append(f"{x:>9.2f} {y:>9.2f} {y - x:>+7.2f}")
        print(f"{p:>4}  " + "  ".join(cells))
    if diffs["req/s"]:
        med = statistics.median
        print("  med " + "  ".join(
            f"{med(vals[(f, 'a')]):>9.2f} {med(vals[(f, 'b')]):>9.2f} {med(diffs[f]):>+7.2f}" for f in fields))
EOF
