#!/usr/bin/env bash
# Recreates what git cannot hold in this case's context: h2 a hard link of h1, the file `private`
# with mode 0600 and the directory `privdir` with mode 0700. Run on a copy of the case (the tests
# and run-cases.sh do); harmless to run twice.
set -euo pipefail
cd "$(dirname "$0")/ctx"
ln -f h1 h2
chmod 0600 private
chmod 0700 privdir
