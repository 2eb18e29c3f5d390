# shellcheck shell=bash
# Run by the runner as `bash -euo pipefail SCRIPT`.
# A step that ignores SIGTERM outlives its killed client: only the runner's
# cleanup removes its container.
trap '' TERM INT
echo started
sleep 120
