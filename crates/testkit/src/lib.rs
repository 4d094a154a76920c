//! Test fixtures: a busybox OCI image from Debian's busybox-static and a docker-registry harness
