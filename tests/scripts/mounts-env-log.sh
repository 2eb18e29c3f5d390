# shellcheck shell=bash
# Run by the runner as `bash -euo pipefail SCRIPT`.
# Reports what the step sees: suite, working dir, env, inputs; writes an output;
# proves the input mount refuses writes.
echo "suite: $(cut -d. -f1 /etc/debian_version) cwd: $PWD greeting: $GREETING"
cat "$INPUTS/source.txt"
gcc --version | head -n 1
echo built > "$PWD/result.txt"
if touch "$INPUTS/forbidden" 2>/dev/null; then echo "input mount is writable"; exit 1; fi
echo "input mount is read-only"
