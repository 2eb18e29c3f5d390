# A step that ignores SIGTERM outlives its killed client: only the runner's
# cleanup removes its container.
trap '' TERM INT
echo started
sleep 120
