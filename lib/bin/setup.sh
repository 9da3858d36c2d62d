#!/usr/bin/env bash
# npm run setup: what npm cannot install. Idempotent; run after `npm ci`.
#  - Jupyter from Debian (nbclient drives the notebooks, ipykernel brings the kernel registry), run with /usr/bin/python3
#  - Chromium from Debian (headless, renders the Plotly figures; playwright-core never downloads a browser)
#  - the tslab kernel, registered to start this checkout's lib/bin/tslab-kernel (tslab with a fix, see tslab_kernel.ts)
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
PACKAGES=(jupyter-nbconvert python3-nbclient python3-ipykernel chromium)
PYTHON=/usr/bin/python3
TSLAB="$root/node_modules/.bin/tslab"
KERNEL="$root/lib/bin/tslab-kernel"

say() { echo "setup: $*"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
else
  [ -x "$PYTHON" ] && "$PYTHON" -c "import nbclient, ipykernel" 2>/dev/null || missing+=(jupyter-nbconvert python3-nbclient python3-ipykernel)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi

if [ ${#missing[@]} -eq 0 ]; then
  say "Debian packages present: ${PACKAGES[*]}"
else
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing ${missing[*]} and this is not a Debian/Ubuntu system (no apt-get)." >&2
    echo "setup: install the equivalents so that $PYTHON has nbclient + ipykernel and /usr/bin/chromium exists (or set D2G_CHROMIUM)." >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    echo "setup: missing Debian packages and not root (no sudo). As root, run:" >&2
    echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  say "installing ${missing[*]} (apt-get)"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  say "installed ${missing[*]}"
fi

if [ ! -x "$TSLAB" ]; then
  echo "setup: $TSLAB not found: run \`npm ci\` first" >&2
  exit 1
fi
registered=$("$PYTHON" -c 'from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec("tslab").argv[0])' 2>/dev/null || true)
if [ "$registered" = "$KERNEL" ]; then
  say "tslab kernel already registered -> $KERNEL"
else
  # As root this writes /usr/local/share/jupyter/kernels, otherwise the user's own kernel folder.
  "$TSLAB" install --python="$PYTHON" --binary="$KERNEL"
  say "registered the tslab and jslab kernels -> $KERNEL${registered:+ (was $registered)}"
fi

say "$("$PYTHON" -c 'import nbclient, jupyter_client; print(f"nbclient {nbclient.__version__}, jupyter_client {jupyter_client.__version__}")'), $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?'), $("$TSLAB" --version 2>/dev/null | head -1 || true)"
say "done: \`npm run notebooks\` executes notebooks/ (D2G_SCALE=smoke|cpu|paper); \`npm run test:notebooks\` is the smoke run"
