#!/usr/bin/env bash
# npm run jupyter [-- JUPYTER ARGS]: Jupyter on notebooks/ with this checkout's tslab kernel. The kernel spec lives in
# .jupyter/ (written by `npm run setup`), which JUPYTER_PATH puts first, so the "TypeScript" kernel of these
# notebooks is this checkout's and not another one's. Figures and tables go to runs/<scale>/figures/, as headless.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
[ -f "$root/.jupyter/kernels/tslab/kernel.json" ] || bash lib/bin/setup.sh
export JUPYTER_PATH="$root/.jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
for app in jupyter-notebook jupyter-lab; do
  if command -v "$app" >/dev/null; then
    echo "jupyter: $app with JUPYTER_PATH=$JUPYTER_PATH (its \"TypeScript\" kernel is this checkout's)"
    exec "$app" --notebook-dir="$root/notebooks" "$@"
  fi
done
echo "jupyter: no jupyter-notebook or jupyter-lab found. Install Debian's (as root):" >&2
echo "  apt-get install --no-install-recommends jupyter-notebook" >&2
echo "or start any Jupyter with JUPYTER_PATH=$JUPYTER_PATH so that it finds this checkout's kernel." >&2
exit 1
