echo 'last words before failing'
exit 3
