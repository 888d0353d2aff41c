# Managed by selfhost.dify; run by the role's checks, never left on the host.
# head-bucket on an S3 endpoint with the key pair from AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY (never on the command line). Usage: ENDPOINT REGION BUCKET.
# SELFHOST_S3_VERIFY=false skips TLS verification (the host checking itself by address).
import os
import sys

import boto3
from botocore.config import Config

endpoint, region, bucket = sys.argv[1:4]
verify = os.environ.get("SELFHOST_S3_VERIFY", "true").lower() != "false"
client = boto3.client("s3", endpoint_url=endpoint, region_name=region, verify=verify,
                      config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=15,
                                    retries={"max_attempts": 3, "mode": "standard"}))
try:
    client.head_bucket(Bucket=bucket)
except Exception as exc:  # pylint: disable=broad-except
    print("head-bucket %s at %s failed: %s" % (bucket, endpoint, exc))
    sys.exit(1)
print("head-bucket %s at %s: ok" % (bucket, endpoint))
