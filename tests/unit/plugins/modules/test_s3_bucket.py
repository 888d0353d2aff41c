# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for selfhost.dify.s3_bucket and its helpers (plugins/module_utils/s3.py).

No network: botocore exceptions are built by hand, and the module's whole run goes against
an in-memory fake S3 client that can refuse credentials, deny an operation or lack a
feature (answer NotImplemented) - the cases a real SeaweedFS cannot show.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("botocore")

from botocore.exceptions import (  # noqa: E402
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    SSLError,
)

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.selfhost.dify.plugins.module_utils import s3  # noqa: E402
from ansible_collections.selfhost.dify.plugins.modules import s3_bucket  # noqa: E402

ENDPOINT = "http://127.0.0.1:8333"
SECRET = "S3cr3t-never-shown-0123456789"


def client_error(code, status, operation, message="message from the server"):
    error = {"Code": code, "Message": message} if code is not None else {}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


# -- bucket names ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dify", "abc", "my-bucket.v2", "a" * 63, "0bucket9", "dify-uploads-2026"])
def test_valid_bucket_names(name):
    assert s3.bucket_name_errors(name) == []


@pytest.mark.parametrize("name, reason", [
    ("Bad_Name", "uppercase letters and the characters '_'"),
    ("ab", "2 characters long"),
    ("a" * 64, "64 characters long"),
    ("-dify", "start and end"),
    ("dify.", "start and end"),
    ("my..bucket", "two adjacent dots"),
    ("my.-bucket", "a dot is next to a hyphen"),
    ("192.168.1.10", "formatted as an IP address"),
    ("xn--bucket", "prefix 'xn--' is reserved"),
    ("sthree-data", "prefix 'sthree-' is reserved"),
    ("data-s3alias", "suffix '-s3alias' is reserved"),
    ("my bucket", "the characters ' '"),
    ("", "the name is empty"),
])
def test_invalid_bucket_names_say_why(name, reason):
    errors = s3.bucket_name_errors(name)
    assert any(reason in e for e in errors), errors


# -- policies ---------------------------------------------------------------------------------

PUBLIC = {"Version": "2012-10-17", "Statement": [{
    "Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::dify/*"}]}


def test_parse_policy_private_and_documents():
    assert s3.parse_policy("private") is None
    assert s3.parse_policy(None) is None
    assert s3.parse_policy(PUBLIC) == PUBLIC
    assert s3.parse_policy(json.dumps(PUBLIC)) == PUBLIC


@pytest.mark.parametrize("value, reason", [
    ("public", "policy must be 'private' or a policy document"),
    (["not", "a", "dict"], "got list"),
    ({"Version": "2012-10-17"}, "no 'Statement'"),
])
def test_parse_policy_rejects(value, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        s3.parse_policy(value)


def test_policies_equal_by_meaning():
    same = {"Statement": {"Resource": ["arn:aws:s3:::dify/*"], "Action": ["s3:GetObject"],
                          "Principal": "*", "Effect": "Allow", "Sid": "PublicRead"}, "Version": "2012-10-17"}
    assert s3.policies_equal(PUBLIC, same)
    assert s3.policies_equal(json.dumps(PUBLIC), same)
    # SeaweedFS returns the document compact with a trailing newline
    assert s3.policies_equal(json.dumps(PUBLIC, separators=(",", ":")) + "\n", PUBLIC)


def test_policies_order_of_actions_does_not_matter_but_content_does():
    a = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["arn:b", "arn:a"]},
                        "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::dify/*"}]}
    b = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["arn:a", "arn:b"]},
                        "Action": ["s3:GetObject", "s3:PutObject", "s3:GetObject"], "Resource": ["arn:aws:s3:::dify/*"]}]}
    assert s3.policies_equal(a, b)
    c = json.loads(json.dumps(b))
    c["Statement"][0]["Effect"] = "Deny"
    assert not s3.policies_equal(a, c)
    assert not s3.policies_equal(a, None)
    assert s3.policies_equal(None, None)


def test_condition_values_compare_as_sets():
    a = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
                        "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}}]}
    b = json.loads(json.dumps(a))
    b["Statement"][0]["Condition"]["IpAddress"]["aws:SourceIp"].reverse()
    assert s3.policies_equal(a, b)


# -- lifecycle rules --------------------------------------------------------------------------

def test_lifecycle_rules_normalized_and_sorted():
    rules = s3.normalize_lifecycle_rules([
        {"id": "tmp", "prefix": "tmp/", "expiration_days": 7},
        {"id": "old", "noncurrent_expiration_days": "30", "prefix": None, "status": None},
    ])
    assert rules == [
        {"id": "old", "prefix": "", "status": "Enabled", "expiration_days": None, "noncurrent_expiration_days": 30},
        {"id": "tmp", "prefix": "tmp/", "status": "Enabled", "expiration_days": 7, "noncurrent_expiration_days": None},
    ]
    assert s3.normalize_lifecycle_rules(None) is None
    assert s3.normalize_lifecycle_rules([]) == []


@pytest.mark.parametrize("rules, reason", [
    ([{"id": "x", "expiration_days": 0}], "expiration_days must be at least 1"),
    ([{"id": "x", "noncurrent_expiration_days": -3}], "noncurrent_expiration_days must be at least 1"),
    ([{"id": "x", "expiration_days": "soon"}], "whole number of days"),
    ([{"id": "x", "expiration_days": True}], "whole number of days"),
    ([{"id": "x"}], "set expiration_days, noncurrent_expiration_days or both"),
    ([{"expiration_days": 3}], "id is required"),
    ([{"id": "x", "expiration_days": 1}, {"id": "x", "expiration_days": 2}], "used by another rule"),
    ([{"id": "x", "expiration_days": 1, "status": "On"}], "status must be Enabled or Disabled"),
    ([{"id": "x", "expiration_days": 1, "days": 2}], "unknown keys days"),
    ("tmp", "must be a list"),
])
def test_lifecycle_rules_rejected_naming_the_rule(rules, reason):
    with pytest.raises(ValueError, match=reason):
        s3.normalize_lifecycle_rules(rules)


def test_lifecycle_rules_round_trip_through_s3_form():
    rules = s3.normalize_lifecycle_rules([
        {"id": "tmp", "prefix": "tmp/", "expiration_days": 7, "status": "Disabled"},
        {"id": "old", "noncurrent_expiration_days": 30, "expiration_days": 365},
    ])
    api = s3.rules_to_api(rules)
    assert api["Rules"][0] == {"ID": "old", "Filter": {"Prefix": ""}, "Status": "Enabled",
                               "Expiration": {"Days": 365}, "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}
    assert s3.rules_from_api(api["Rules"]) == rules


def test_lifecycle_rules_from_api_variants():
    legacy = [{"ID": "a", "Prefix": "logs/", "Status": "Enabled", "Expiration": {"Days": 3}}]
    assert s3.rules_from_api(legacy)[0]["prefix"] == "logs/"
    and_filter = [{"ID": "b", "Filter": {"And": {"Prefix": "x/", "Tags": [{"Key": "k", "Value": "v"}]}},
                   "Status": "Enabled", "Expiration": {"Days": 3}}]
    rule = s3.rules_from_api(and_filter)[0]
    assert rule["prefix"] == "x/" and rule["unmanaged"] == ["Filter.And.Tags"]
    transition = [{"ID": "c", "Filter": {}, "Status": "Enabled", "Transitions": [{"Days": 30}],
                   "Expiration": {"ExpiredObjectDeleteMarker": True}}]
    rule = s3.rules_from_api(transition)[0]
    assert rule["unmanaged"] == ["Transitions", "Expiration.ExpiredObjectDeleteMarker"]
    # a rule with unmanaged parts never equals a rule the module writes: it is replaced
    assert rule != s3.normalize_lifecycle_rules([{"id": "c", "expiration_days": 1}])[0]


# -- error messages ---------------------------------------------------------------------------

@pytest.mark.parametrize("exc, kind", [
    (client_error("InvalidAccessKeyId", 403, "ListBuckets"), "credentials"),
    (client_error("SignatureDoesNotMatch", 403, "ListBuckets"), "credentials"),
    (NoCredentialsError(), "credentials"),
    (client_error("AccessDenied", 403, "PutBucketPolicy"), "access_denied"),
    (client_error("403", 403, "HeadBucket", "Forbidden"), "access_denied"),
    (client_error(None, 403, "HeadBucket"), "access_denied"),
    (client_error("404", 404, "HeadBucket", "Not Found"), "not_found"),
    (client_error("NoSuchBucketPolicy", 404, "GetBucketPolicy"), "not_found"),
    (client_error("NoSuchBucket", 404, "GetBucketVersioning"), "no_such_bucket"),
    (client_error("NotImplemented", 501, "PutBucketLifecycleConfiguration"), "not_implemented"),
    (client_error("MethodNotAllowed", 405, "GetBucketPolicy"), "not_implemented"),
    (client_error("InvalidBucketName", 400, "CreateBucket"), "invalid_name"),
    (client_error("AuthorizationHeaderMalformed", 400, "HeadBucket"), "region"),
    (client_error("BucketAlreadyOwnedByYou", 409, "CreateBucket"), "other"),
    (EndpointConnectionError(endpoint_url=ENDPOINT), "unreachable"),
    (ConnectTimeoutError(endpoint_url=ENDPOINT), "unreachable"),
    (SSLError(endpoint_url="https://s3.example.com", error="certificate verify failed"), "tls"),
    (ValueError("odd"), "other"),
])
def test_error_kinds(exc, kind):
    assert s3.error_kind(exc) == kind


def test_message_for_refused_credentials():
    msg = s3.describe_error(client_error("SignatureDoesNotMatch", 403, "ListBuckets", "signature mismatch"),
                            "ListBuckets", "dify", ENDPOINT)
    assert msg.startswith("s3_bucket: the endpoint %s rejected the credentials (SignatureDoesNotMatch" % ENDPOINT)
    assert "check access_key and secret_key" in msg


def test_message_for_unreachable_endpoint_names_the_url():
    msg = s3.describe_error(EndpointConnectionError(endpoint_url=ENDPOINT + "/dify"), "HeadBucket", "dify", ENDPOINT)
    assert msg.startswith("s3_bucket: cannot reach the S3 endpoint %s" % ENDPOINT)


def test_message_for_a_missing_feature():
    msg = s3.describe_error(client_error("NotImplemented", 501, "PutBucketLifecycleConfiguration", "nope"),
                            "PutBucketLifecycleConfiguration", "dify", ENDPOINT)
    assert "does not support lifecycle rules: NotImplemented" in msg


def test_message_for_denied_operation_names_it():
    msg = s3.describe_error(client_error("AccessDenied", 403, "PutBucketPolicy", "Access Denied."),
                            "PutBucketPolicy", "dify", ENDPOINT)
    assert msg.startswith("s3_bucket: access denied for PutBucketPolicy on bucket 'dify' (AccessDenied")


def test_message_for_rejected_name():
    msg = s3.describe_error(client_error("InvalidBucketName", 400, "CreateBucket", "The specified bucket is not valid."),
                            "CreateBucket", "weird", ENDPOINT)
    assert "rejected the bucket name 'weird' (InvalidBucketName" in msg


def test_message_for_tls_points_to_ca_bundle():
    msg = s3.describe_error(SSLError(endpoint_url="https://s3.example.com", error="certificate verify failed"),
                            "HeadBucket", "dify", "https://s3.example.com")
    assert "TLS verification failed" in msg and "ca_bundle" in msg


# -- the module's plan ------------------------------------------------------------------------

def test_plan_for_a_new_bucket():
    before = s3.bucket_state(False, name="dify")
    after, changes = s3_bucket.desired_state(before, True, None, [])
    assert [c[0] for c in changes] == ["create", "versioning"]
    assert after == {"name": "dify", "exists": True, "versioning": "Enabled", "policy": None, "lifecycle_rules": []}


def test_plan_versioning_false_suspends_only_an_enabled_bucket():
    enabled = s3.bucket_state(True, "Enabled", None, [], name="dify")
    after, changes = s3_bucket.desired_state(enabled, False, None, None)
    assert changes == [("versioning", "Suspended")] and after["versioning"] == "Suspended"
    for status in ("Disabled", "Suspended"):
        dummy, changes = s3_bucket.desired_state(s3.bucket_state(True, status, None, [], name="dify"), False, None, None)
        assert changes == []


def test_plan_private_removes_a_policy_and_null_options_leave_things():
    current = s3.bucket_state(True, "Enabled", s3.normalize_policy(PUBLIC), [{"id": "x"}], name="dify")
    after, changes = s3_bucket.desired_state(current, None, None, None)
    assert changes == [("policy", None)]
    assert after["versioning"] == "Enabled" and after["lifecycle_rules"] == [{"id": "x"}]
    dummy, changes = s3_bucket.desired_state(current, None, s3.normalize_policy(PUBLIC), None)
    assert changes == []


# -- whole module runs against a fake S3 ------------------------------------------------------

class FakeS3:
    """Enough of an S3 client for the module, in memory."""

    def __init__(self, buckets=None, unsupported=(), denied=(), bad_credentials=None):
        self.buckets = buckets if buckets is not None else {}
        self.unsupported = set(unsupported)
        self.denied = set(denied)
        self.bad_credentials = bad_credentials
        self.calls = []

    def _enter(self, operation, bucket=None, must_exist=True):
        self.calls.append(operation)
        if self.bad_credentials:
            if operation == "HeadBucket":
                raise client_error("403", 403, operation, "Forbidden")
            raise client_error(self.bad_credentials, 403, operation, "refused")
        if operation in self.unsupported:
            raise client_error("NotImplemented", 501, operation, "A header you provided implies functionality "
                                                                 "that is not implemented")
        if operation in self.denied:
            raise client_error("403" if operation == "HeadBucket" else "AccessDenied", 403, operation, "Access Denied.")
        if must_exist and bucket not in self.buckets:
            if operation == "HeadBucket":
                raise client_error("404", 404, operation, "Not Found")
            raise client_error("NoSuchBucket", 404, operation, "The specified bucket does not exist")
        return self.buckets.get(bucket)

    def list_buckets(self):
        self._enter("ListBuckets", must_exist=False)
        return {"Buckets": [{"Name": n} for n in self.buckets]}

    def head_bucket(self, Bucket):
        self._enter("HeadBucket", Bucket)
        return {}

    def create_bucket(self, Bucket, **kwargs):
        self._enter("CreateBucket", Bucket, must_exist=False)
        self.buckets[Bucket] = {"versioning": None, "policy": None, "lifecycle": None, "objects": []}
        return {}

    def delete_bucket(self, Bucket):
        self._enter("DeleteBucket", Bucket)
        del self.buckets[Bucket]

    def get_bucket_versioning(self, Bucket):
        b = self._enter("GetBucketVersioning", Bucket)
        return {"Status": b["versioning"]} if b["versioning"] else {}

    def put_bucket_versioning(self, Bucket, VersioningConfiguration):
        self._enter("PutBucketVersioning", Bucket)["versioning"] = VersioningConfiguration["Status"]

    def get_bucket_policy(self, Bucket):
        b = self._enter("GetBucketPolicy", Bucket)
        if b["policy"] is None:
            raise client_error("NoSuchBucketPolicy", 404, "GetBucketPolicy", "The bucket policy does not exist")
        return {"Policy": b["policy"]}

    def put_bucket_policy(self, Bucket, Policy):
        self._enter("PutBucketPolicy", Bucket)["policy"] = json.dumps(json.loads(Policy), separators=(",", ":"))

    def delete_bucket_policy(self, Bucket):
        self._enter("DeleteBucketPolicy", Bucket)["policy"] = None

    def get_bucket_lifecycle_configuration(self, Bucket):
        b = self._enter("GetBucketLifecycleConfiguration", Bucket)
        if not b["lifecycle"]:
            raise client_error("NoSuchLifecycleConfiguration", 404, "GetBucketLifecycleConfiguration", "none")
        return {"Rules": b["lifecycle"]}

    def put_bucket_lifecycle_configuration(self, Bucket, LifecycleConfiguration):
        self._enter("PutBucketLifecycleConfiguration", Bucket)["lifecycle"] = LifecycleConfiguration["Rules"]

    def delete_bucket_lifecycle(self, Bucket):
        self._enter("DeleteBucketLifecycle", Bucket)["lifecycle"] = None

    def list_object_versions(self, Bucket, MaxKeys=1000, **kwargs):
        b = self._enter("ListObjectVersions", Bucket)
        versions = [{"Key": k, "VersionId": v} for k, v in b["objects"]]
        return {"Versions": versions[:MaxKeys], "IsTruncated": False}

    def list_objects_v2(self, Bucket, MaxKeys=1000, **kwargs):
        b = self._enter("ListObjectsV2", Bucket)
        return {"Contents": [{"Key": k} for k, dummy in b["objects"]][:MaxKeys], "IsTruncated": False}

    def delete_objects(self, Bucket, Delete):
        b = self._enter("DeleteObjects", Bucket)
        gone = set((o["Key"], o.get("VersionId")) for o in Delete["Objects"])
        b["objects"] = [o for o in b["objects"] if o not in gone and (o[0], None) not in gone]
        return {}

    def list_multipart_uploads(self, Bucket):
        self._enter("ListMultipartUploads", Bucket)
        return {}


def bucket(**kwargs):
    value = {"versioning": None, "policy": None, "lifecycle": None, "objects": []}
    value.update(kwargs)
    return value


def run_module(monkeypatch, capsys, fake, check_mode=False, diff=False, **args):
    monkeypatch.setattr(s3_bucket, "make_client", lambda params: fake)
    module_args = {"endpoint_url": ENDPOINT, "access_key": "AKIDTEST", "secret_key": SECRET, "name": "dify",
                   "_ansible_check_mode": check_mode, "_ansible_diff": diff}
    module_args.update(args)
    with patch_module_args(module_args), pytest.raises(SystemExit):
        s3_bucket.main()
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out)


def test_module_creates_and_is_then_idempotent(monkeypatch, capsys):
    fake = FakeS3()
    rules = [{"id": "tmp", "prefix": "tmp/", "expiration_days": 7}]
    result = run_module(monkeypatch, capsys, fake, diff=True, versioning=True, policy=PUBLIC, lifecycle_rules=rules)
    assert result["changed"] is True
    assert result["bucket"]["versioning"] == "Enabled"
    assert result["bucket"]["lifecycle_rules"][0]["expiration_days"] == 7
    assert result["diff"]["before"]["exists"] is False
    assert fake.buckets["dify"]["versioning"] == "Enabled"
    writes = [c for c in fake.calls if c.startswith(("Put", "Create", "Delete"))]
    assert writes == ["CreateBucket", "PutBucketVersioning", "PutBucketPolicy", "PutBucketLifecycleConfiguration"]
    fake.calls = []
    result = run_module(monkeypatch, capsys, fake, versioning=True, policy=json.dumps(PUBLIC), lifecycle_rules=rules)
    assert result["changed"] is False
    assert not [c for c in fake.calls if c.startswith(("Put", "Create", "Delete"))]


def test_module_check_mode_changes_nothing(monkeypatch, capsys):
    fake = FakeS3()
    result = run_module(monkeypatch, capsys, fake, check_mode=True, versioning=True)
    assert result["changed"] is True and result["bucket"]["exists"] is True
    assert fake.buckets == {}
    assert fake.calls == ["HeadBucket"]


def test_module_unsupported_feature_is_named(monkeypatch, capsys):
    fake = FakeS3({"dify": bucket()}, unsupported={"GetBucketLifecycleConfiguration", "GetBucketVersioning"})
    result = run_module(monkeypatch, capsys, fake, lifecycle_rules=[{"id": "x", "expiration_days": 1}])
    assert result["failed"] is True
    assert "does not support lifecycle rules: NotImplemented" in result["msg"]
    # the same server, options for the missing features unset: no failure, reported as null
    result = run_module(monkeypatch, capsys, fake)
    assert result["changed"] is False
    assert result["bucket"]["versioning"] is None and result["bucket"]["lifecycle_rules"] is None


def test_module_refused_credentials_behind_a_bare_403(monkeypatch, capsys):
    fake = FakeS3(bad_credentials="InvalidAccessKeyId")
    result = run_module(monkeypatch, capsys, fake)
    assert result["failed"] is True
    assert result["msg"].startswith("s3_bucket: the endpoint %s rejected the credentials (InvalidAccessKeyId" % ENDPOINT)
    assert fake.calls == ["HeadBucket", "ListBuckets"]


def test_module_denied_operation_is_named(monkeypatch, capsys):
    fake = FakeS3({"dify": bucket()}, denied={"PutBucketVersioning"})
    result = run_module(monkeypatch, capsys, fake, versioning=True)
    assert result["failed"] is True
    assert result["msg"].startswith("s3_bucket: access denied for PutBucketVersioning on bucket 'dify'")


def test_module_bad_input_fails_before_any_request(monkeypatch, capsys):
    fake = FakeS3()
    result = run_module(monkeypatch, capsys, fake, name="Bad_Name", lifecycle_rules=[{"id": "x"}], timeout=0)
    assert result["failed"] is True
    assert "name 'Bad_Name' is not a valid S3 bucket name" in result["msg"]
    assert "set expiration_days, noncurrent_expiration_days or both" in result["msg"]
    assert "timeout must be at least 1 second" in result["msg"]
    assert fake.calls == []


def test_module_absent_refuses_non_empty_then_forces(monkeypatch, capsys):
    fake = FakeS3({"dify": bucket(objects=[("a.txt", "v1"), ("a.txt", "v2")])})
    result = run_module(monkeypatch, capsys, fake, state="absent")
    assert result["failed"] is True and "is not empty" in result["msg"] and "force: true" in result["msg"]
    assert "dify" in fake.buckets
    result = run_module(monkeypatch, capsys, fake, state="absent", force=True, check_mode=True)
    assert result["changed"] is True and "dify" in fake.buckets
    result = run_module(monkeypatch, capsys, fake, state="absent", force=True)
    assert result["changed"] is True and fake.buckets == {}
    result = run_module(monkeypatch, capsys, fake, state="absent")
    assert result["changed"] is False


def test_module_without_boto3_names_the_package(monkeypatch, capsys):
    monkeypatch.setattr(s3_bucket, "BOTO3_IMPORT_ERROR", "Traceback: No module named 'boto3'")
    result = run_module(monkeypatch, capsys, FakeS3())
    assert result["failed"] is True
    assert "boto3" in result["msg"] and "python3-boto3" in result["msg"]
