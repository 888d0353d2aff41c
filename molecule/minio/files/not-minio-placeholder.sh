#!/bin/sh
# Placeholder for tests: NOT MinIO and not pretending to be. The minio molecule scenario
# serves this file as the "artifact" to prove download, SHA-256 check and installation;
# no MinIO binary can be obtained on the test machines. It only says so and fails.
echo "placeholder for tests: not MinIO" >&2
exit 1
