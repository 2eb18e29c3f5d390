# shellcheck shell=bash
# Run by the runner as `bash -euo pipefail SCRIPT`.
# With a network this connects or hangs until the timeout; with --network none
# there is no interface but lo and connect fails at once.
if grep -v '^ *lo:' /proc/net/dev | grep -q ':'; then echo "has an interface"; exit 1; fi
timeout 20 bash -c 'exec 3<>/dev/tcp/192.0.2.1/80'
