#!/bin/bash
# Run a command in a private mount namespace (started by `unshare --mount`)
# where the distribution's CA bundle is replaced by the given file, so a TLS
# check can trust a test CA "installed in the system store" without touching
# the real one. Usage: with_system_ca.sh BUNDLE COMMAND...
set -euo pipefail
bundle=$1
shift
mount --make-rprivate /
mount --bind "$bundle" /etc/ssl/certs/ca-certificates.crt
exec "$@"
