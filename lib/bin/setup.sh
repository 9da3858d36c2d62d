#!/usr/bin/env bash
# npm run setup: what npm cannot install. Idempotent; run after `npm ci` (`npm run reproduce` runs it when needed).
#  - from Debian, without Recommends, only what the notebooks need: python3-nbclient drives them headless (it
#    brings jupyter_client, which starts kernels, and nbformat); chromium renders the Plotly figures headless.
#    Neither nbconvert nor ipykernel is used. For Jupyter in a browser add jupyter-notebook (see `npm run jupyter`).
#  - this checkout's kernel spec, .jupyter/kernels/tslab/kernel.json, starting this checkout's lib/bin/tslab-kernel.
#    The runner and `npm run jupyter` find it through JUPYTER_PATH=<checkout>/.jupyter, which Jupyter searches
#    first, so two checkouts never run each other's kernel and nothing machine-wide is registered.
#  - a git filter that strips outputs from notebooks/*.ipynb as they are committed (.gitattributes).
set -euo pipefail
USAGE="usage: npm run setup
Install what npm cannot (Debian's Jupyter and Chromium, when missing) and register the tslab kernel for this checkout.
It takes no arguments."
case "$#:${1:-}" in
  0:) ;;
  1:--help | 1:-h) echo "$USAGE"; exit 0 ;;
  *) printf 'setup: unexpected argument%s: %s\n\n%s\n' "$([ $# -gt 1 ] && echo s)" "$*" "$USAGE" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
root="$PWD"
PACKAGES=(python3-nbclient chromium)
PYTHON=/usr/bin/python3
KERNEL="$root/lib/bin/tslab-kernel"
SPEC="$root/.jupyter/kernels/tslab/kernel.json"
# seconds to wait for another apt/dpkg process to release its lock
LOCK_WAIT=300

say() { echo "setup: $*"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Run an apt-get command, waiting (bounded) while another process holds an apt or dpkg lock: DPkg::Lock::Timeout
# covers the dpkg lock of `install`, the loop covers the lists lock of `update`, which that option does not.
apt_waiting() {
  local deadline=$((SECONDS + LOCK_WAIT)) said="" log rc
  log=$(mktemp)
  while :; do
    rc=0
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$LOCK_WAIT" "$@" 2>"$log" || rc=$?
    if [ "$rc" -eq 0 ] || ! grep -q "Could not get lock" "$log" || [ "$SECONDS" -ge "$deadline" ]; then
      cat "$log" >&2
      rm -f "$log"
      [ "$rc" -eq 0 ] || echo "setup: apt-get $* failed (exit $rc)${said:+ after waiting ${LOCK_WAIT}s for the apt lock}" >&2
      return "$rc"
    fi
    [ -n "$said" ] || say "another apt process holds the lock; waiting for it (at most ${LOCK_WAIT}s)"
    said=1
    sleep 5
  done
}

missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
else
  [ -x "$PYTHON" ] && "$PYTHON" -c "import nbclient" 2>/dev/null || missing+=(python3-nbclient)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi

if [ ${#missing[@]} -eq 0 ]; then
  say "Debian packages present: ${PACKAGES[*]}"
else
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing ${missing[*]} and this is not a Debian/Ubuntu system (no apt-get)." >&2
    echo "setup: install the equivalents so that $PYTHON has nbclient and /usr/bin/chromium exists (or set D2G_CHROMIUM)." >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "setup: missing Debian packages and not root (no sudo). As root, run:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  # the package lists are only fetched when they do not know a package yet (a fresh container has none)
  for p in "${missing[@]}"; do
    if apt-cache policy "$p" 2>/dev/null | grep -q "Candidate: (none)" || [ -z "$(apt-cache policy "$p" 2>/dev/null)" ]; then
      say "fetching the Debian package lists (apt-get update)"
      apt_waiting update -q
      break
    fi
  done
  say "installing ${missing[*]} (apt-get, without Recommends)"
  apt_waiting install -y -q --no-install-recommends "${missing[@]}"
  say "installed ${missing[*]}"
fi

if [ ! -d "$root/node_modules/tslab" ]; then
  echo "setup: $root/node_modules/tslab not found: run \`npm ci\` first" >&2
  exit 1
fi
# The kernel spec is written by node (always present here) so its JSON is quoted correctly whatever the path.
KERNEL="$KERNEL" SPEC="$SPEC" node -e '
const fs = require("fs"), path = require("path");
const spec = {
  argv: [process.env.KERNEL, "kernel", "--config-path", "{connection_file}"],
  display_name: "TypeScript",
  language: "typescript",
  interrupt_mode: "signal",
};
const text = JSON.stringify(spec, null, 1) + "\n";
const old = fs.existsSync(process.env.SPEC) ? fs.readFileSync(process.env.SPEC, "utf8") : null;
if (old !== text) {
  fs.mkdirSync(path.dirname(process.env.SPEC), { recursive: true });
  fs.writeFileSync(process.env.SPEC, text);
}
console.log("setup: kernel spec " + (old === text ? "in place" : "written") + ": " + process.env.SPEC + " -> " + process.env.KERNEL);
'

# Outputs never reach a commit of notebooks/*.ipynb: .gitattributes names this filter. A linked worktree shares its
# repository's config, so the filter is set there only from the main checkout.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ "$(git -C "$root" rev-parse --show-toplevel)" = "$root" ]; then
  FILTER="node node_modules/d2g/lib/bin/strip_notebooks.js --filter"
  if [ "$(git -C "$root" config --get filter.strip-notebook-outputs.clean || true)" = "$FILTER" ]; then
    say "git filter strip-notebook-outputs in place"
  elif [ "$(git -C "$root" rev-parse --git-dir)" != "$(git -C "$root" rev-parse --git-common-dir)" ]; then
    say "linked worktree: the git filter strip-notebook-outputs is not set from here; run \`npm run strip\` before committing notebooks"
  else
    git -C "$root" config filter.strip-notebook-outputs.clean "$FILTER"
    say "git filter strip-notebook-outputs set: commits of notebooks/*.ipynb carry no outputs"
  fi
fi

say "$("$PYTHON" -c 'import nbclient, jupyter_client; print(f"nbclient {nbclient.__version__}, jupyter_client {jupyter_client.__version__}")'), $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?')"
say "done: \`npm run reproduce\` runs every notebook (D2G_SCALE=smoke|cpu|paper); \`npm run jupyter\` opens them in Jupyter"
