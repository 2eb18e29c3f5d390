# shellcheck shell=bash
# Run by the runner as `bash -euo pipefail SCRIPT`.
echo 'last words before failing'
exit 3
