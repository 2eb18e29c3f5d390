# shellcheck shell=bash
# Run by the runner as `bash -euo pipefail SCRIPT`.
true
