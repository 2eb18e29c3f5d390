# shellcheck shell=bash
# Run by the runner as `bash -euo pipefail SCRIPT`.
# Prints the environment the step runs with, one NAME=value a line.
env | LC_ALL=C sort
