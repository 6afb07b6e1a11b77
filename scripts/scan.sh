#!/usr/bin/env bash
# `make scan`: hadolint + checkov (Dockerfile), bandit (our Python), the check of the image's
# attached whole-image CycloneDX SBOM (label digest, layers, dpkg + venv contents), our own
# image inspection (scripts/inspect_image.py) and offline vulnerability matching
# (supply/osv_scan.py) of the lock, the image's venv and its Debian packages against a
# local OSV advisory directory (SCAN_OSV_DIR), with triage in supply/osv-allowlist.toml.
# The tools live in their own venv (.venv-scan, gitignored) so their pins never meet ours.
# One summary table at the end; exit 1 on any FAIL. Without SCAN_OSV_DIR (or with an empty
# one) the vulnerability row is SKIP ("no vulnerability data"); SCAN_STRICT=1 turns every SKIP
# into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
SCAN_VENV="${SCAN_VENV:-.venv-scan}"
IMAGE="${IMAGE:-secure-trainer}"
VARIANT="${VARIANT:-cpu}"
SCAN_IMAGE="${SCAN_IMAGE:-$IMAGE:$VARIANT}"
LOCK="requirements/lock-$VARIANT.txt"
OUT="${SCAN_OUT:-build/scan}"
STRICT="${SCAN_STRICT:-0}"
OSV_DIR="${SCAN_OSV_DIR:-}"
OSV_ALLOW="${SCAN_OSV_ALLOW:-supply/osv-allowlist.toml}"
mkdir -p "$OUT"
# The tools come from their own hashed lock (requirements/lock-scan.txt, from
# requirements/scan-tools.in by `python scripts/lock.py scan`), never floating: the venv is
# rebuilt from scratch whenever the lock changes, installed with --require-hashes --no-deps.
SCAN_LOCK=requirements/lock-scan.txt
want=$(sha256sum "$SCAN_LOCK" | cut -d' ' -f1)
if [[ "$(cat "$SCAN_VENV/.lock-sha256" 2>/dev/null)" != "$want" ]]; then
  echo "[scan] installing the scan tools from $SCAN_LOCK (hashed) into $SCAN_VENV" >&2
  rm -rf "$SCAN_VENV"
  python3 -m venv "$SCAN_VENV" \
    && "$SCAN_VENV/bin/pip" install -q --require-hashes --no-deps --only-binary=:all: \
         -r "$SCAN_LOCK" >&2 \
    && echo "$want" >"$SCAN_VENV/.lock-sha256" \
    || { echo "[scan] could not install the scan tools" >&2; exit 2; }
fi
[[ "${SCAN_TOOLS_ONLY:-0}" == 1 ]] && exit 0  # install/verify the tools only (no engine needed)
# The image checks need an engine; like `make build`, leave it running for the next step.
bash scripts/dockerd.sh >/dev/null || exit 2
B="$SCAN_VENV/bin"
declare -a ROWS=()
failed=0
row() {  # row TOOL STATUS DETAIL
  ROWS+=("$(printf '%-10s %-6s %s' "$1" "$2" "$3")")
  if [[ "$2" == FAIL || ( "$2" == SKIP && "$STRICT" == 1 ) ]]; then failed=1; fi
}

# SCAN_SKIP_LINT=1: the image checks only (4-6), for tests that scan derived images.
if [[ "${SCAN_SKIP_LINT:-0}" != 1 ]]; then
# 1. hadolint: Dockerfile lint (errors and warnings fail; rule ignores are inline, with reasons).
if "$B/hadolint" --failure-threshold warning Dockerfile supply/sbom.Dockerfile >"$OUT/hadolint.txt" 2>&1; then
  row hadolint ok "Dockerfile, supply/sbom.Dockerfile clean"
else
  row hadolint FAIL "$(wc -l <"$OUT/hadolint.txt") issue(s), see $OUT/hadolint.txt"
fi

# 2. checkov: Dockerfile policy checks.
"$B/checkov" --quiet --compact --skip-download --framework dockerfile -f Dockerfile \
  -f supply/sbom.Dockerfile --output cli \
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
fi  # SCAN_SKIP_LINT

# 4. SBOM: the whole-image CycloneDX SBOM that scripts/sbom.sh attached at build time (file
# + label digest). It must hash to its label, describe the image right below the scanned one
# (same layers plus the SBOM's), and list exactly the image's dpkg packages and venv
# distributions with their versions (supply/sbom.py check).
image_files() {  # copy the image's dpkg status, os-release and SBOM out of a never-started container
  local cid rc sbom_path
  cid=$(docker create --network none "$SCAN_IMAGE" 2>/dev/null) || return 1
  mkdir -p "$OUT/image"
  rm -f "$OUT/image/sbom.cdx.json"
  docker cp -L "$cid:/var/lib/dpkg/status" "$OUT/image/dpkg-status" >/dev/null 2>&1 \
    && docker cp -L "$cid:/etc/os-release" "$OUT/image/os-release" >/dev/null 2>&1
  rc=$?
  sbom_path=$(docker image inspect -f '{{index .Config.Labels "io.secure-trainer.sbom.path"}}' "$SCAN_IMAGE")
  [[ -n "$sbom_path" ]] && docker cp "$cid:$sbom_path" "$OUT/image/sbom.cdx.json" >/dev/null 2>&1
  docker rm "$cid" >/dev/null 2>&1
  return $rc
}
have_files=0
if docker image inspect "$SCAN_IMAGE" >/dev/null 2>&1; then
  # The venv's own interpreter lists what is installed under /opt/venv (no network, not started
  # as a service).
  docker run --rm -i --network none --entrypoint /opt/venv/bin/python "$SCAN_IMAGE" - \
    >"$OUT/venv-freeze.txt" 2>"$OUT/sbom.err" <<'PY'
import importlib.metadata as md
import sys
venv = [p for p in sys.path if p.startswith("/opt/venv")]
names = sorted({f"{d.metadata['Name']}=={d.version}" for d in md.distributions(path=venv)})
print("\n".join(names))
PY
  image_files && have_files=1
  label() { docker image inspect -f "{{index .Config.Labels \"io.secure-trainer.sbom.$1\"}}" "$SCAN_IMAGE"; }
  described=$(label image)
  if [[ $have_files == 1 && -s "$OUT/image/sbom.cdx.json" && -s "$OUT/venv-freeze.txt" ]]; then
    sbom_args=(--sbom "$OUT/image/sbom.cdx.json" --label-sha256 "$(label sha256)"
               --image-id "$described" --dpkg-status "$OUT/image/dpkg-status"
               --venv-freeze "$OUT/venv-freeze.txt")
    # The described image is usually still here (built on this host); then its layers must be
    # exactly the scanned image's minus the SBOM layer.
    if docker image inspect "$described" >/dev/null 2>&1; then
      docker image inspect -f '{{json .RootFS.Layers}}' "$described" >"$OUT/layers-described.json"
      docker image inspect -f '{{json .RootFS.Layers}}' "$SCAN_IMAGE" >"$OUT/layers-image.json"
      sbom_args+=(--layers "$OUT/layers-described.json" "$OUT/layers-image.json")
    fi
    cp "$OUT/image/sbom.cdx.json" "$OUT/sbom.cdx.json"
    if "$B/python" -m supply.sbom check "${sbom_args[@]}" >"$OUT/sbom.txt" 2>&1; then
      row sbom ok "$(tail -1 "$OUT/sbom.txt") -> $OUT/sbom.cdx.json"
    else
      row sbom FAIL "$(tail -1 "$OUT/sbom.txt"), see $OUT/sbom.txt"
    fi
  else
    row sbom FAIL "no SBOM in $SCAN_IMAGE (label io.secure-trainer.sbom.path; build with scripts/build.sh)"
  fi
  # 5. our inspection of the built image.
  if python3 scripts/inspect_image.py "$SCAN_IMAGE" --json "$OUT/inspect.json" >"$OUT/inspect.txt" 2>&1; then
    row inspect ok "user, secrets, setuid allow-list, world-writable, pip/compilers, caches"
  else
    row inspect FAIL "$(grep -c '^FINDING' "$OUT/inspect.txt") check(s) failed, see $OUT/inspect.txt"
  fi
else
  row sbom FAIL "image $SCAN_IMAGE not built (run make build-cpu)"
  row inspect FAIL "image $SCAN_IMAGE not built (run make build-cpu)"
fi

# 6. osv: known vulnerabilities, offline, from a local OSV directory (OSV JSON or the PyPA
# advisory database's YAML). Python from the lock and the image's venv (PEP 440 ranges);
# Debian from the image's dpkg status, by source package and release (dpkg version order).
rm -f "$OUT/osv.txt" "$OUT/osv.json"
if [[ -z "$OSV_DIR" ]]; then
  row osv SKIP "no vulnerability data: set SCAN_OSV_DIR to a local OSV advisory directory (SCAN_STRICT=1 fails)"
else
  osv_args=(--osv-dir "$OSV_DIR" --lock "$LOCK" --allow "$OSV_ALLOW" --json "$OUT/osv.json")
  scope="lock"
  [[ -s "$OUT/venv-freeze.txt" ]] && { osv_args+=(--lock "$OUT/venv-freeze.txt"); scope+=" + image venv"; }
  if [[ $have_files == 1 ]]; then
    # Parsed, never sourced: the file comes from the image.
    release=$(sed -n 's/^VERSION_ID="\{0,1\}\([0-9][0-9]*\)"\{0,1\}$/\1/p' "$OUT/image/os-release")
    if [[ -n "$release" ]]; then
      osv_args+=(--dpkg-status "$OUT/image/dpkg-status" --debian-release "$release")
      scope+=" + Debian $release packages"
    fi
  fi
  "$B/python" -m supply.osv_scan "${osv_args[@]}" >"$OUT/osv.txt" 2>&1
  rc=$?
  dbdate=$(sed -n 's/.*newest modified \([0-9-]*\).*/\1/p' "$OUT/osv.txt" | head -1)
  summary=$(grep -o '[0-9]* untriaged finding(s), [0-9]* triaged, [0-9]* expired' "$OUT/osv.txt")
  case $rc in
    0) row osv ok "$scope: $summary (database of $dbdate)" ;;
    1) row osv FAIL "$scope: $summary (database of $dbdate), see $OUT/osv.txt" ;;
    4) row osv SKIP "no vulnerability data in $OSV_DIR (SCAN_STRICT=1 fails)" ;;
    *) row osv FAIL "could not scan: $(tail -1 "$OUT/osv.txt")" ;;
  esac
  if [[ "$scope" != *Debian* ]]; then
    row osv-deb SKIP "Debian packages not scanned (image $SCAN_IMAGE or its dpkg status missing)"
  fi
fi

echo
echo "scan of $SCAN_IMAGE (reports in $OUT)"
printf '%-10s %-6s %s\n' TOOL STATUS DETAIL
printf '%s\n' "${ROWS[@]}"
for f in "$OUT/hadolint.txt" "$OUT/inspect.txt" "$OUT/osv.txt" "$OUT/sbom.txt"; do
  grep -q . "$f" 2>/dev/null && grep -qE "DL[0-9]|SC[0-9]|FINDING|EXPIRED|MISMATCH" "$f" && { echo; echo "--- $f"; cat "$f"; }
done
exit $failed
