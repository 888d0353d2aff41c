#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_bucket
short_description: Manage a bucket on any S3-compatible server (SeaweedFS, MinIO, AWS S3)
version_added: 0.1.0
author: selfhost.dify maintainers (@selfhost)
description:
  - Creates or deletes a bucket on an S3-compatible endpoint and keeps its versioning, its
    bucket policy and its lifecycle expiration rules as declared.
  - Private by default; a bucket policy other than the declared one is removed or replaced.
  - Built on boto3/botocore (the request signing is botocore's). On Debian the host needs the
    C(python3-boto3) package.
  - Every value is checked before the first request (bucket name rules, lifecycle rules, the
    policy document); wrong credentials, an unreachable endpoint, a name the server rejects,
    an operation the key may not perform and a feature the server lacks each end in one clear
    message, without a traceback and without the secret key.
  - Verified against SeaweedFS 4.48 (C(weed server -s3)), see the notes.
requirements:
  - boto3 (Debian package C(python3-boto3))
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
options:
  endpoint_url:
    description:
      - URL of the S3 endpoint, for example V(http://10.0.0.5:8333) (SeaweedFS) or
        V(https://s3.eu-central-1.amazonaws.com).
    type: str
    required: true
  access_key:
    description: Access key ID of a key pair allowed to manage the bucket.
    type: str
    required: true
  secret_key:
    description: Secret access key of that key pair. It is never shown in messages.
    type: str
    required: true
  region:
    description: Region the request is signed for (and the bucket created in).
    type: str
    default: us-east-1
  path_style:
    description:
      - Address buckets as C(endpoint/bucket) (path style) rather than C(bucket.endpoint)
        (virtual-hosted style). Self-hosted servers addressed by IP need V(true).
    type: bool
    default: true
  validate_certs:
    description: Verify the TLS certificate of an C(https) endpoint.
    type: bool
    default: true
  ca_bundle:
    description: CA certificate bundle (PEM) to verify the endpoint with, instead of the system's.
    type: path
  name:
    description:
      - Bucket name. It must follow the S3 naming rules (3 to 63 lowercase letters, digits,
        hyphens and dots, starting and ending with a letter or digit, no C(..), not an IP
        address, no reserved prefix or suffix); this is checked before any request.
    type: str
    required: true
  state:
    description: Whether the bucket exists.
    type: str
    choices: [present, absent]
    default: present
  versioning:
    description:
      - V(true) turns versioning on. V(false) suspends it on a bucket that had it (S3 cannot
        turn it off again) and leaves a never-versioned bucket unversioned.
      - Unset (V(null)) leaves versioning as it is.
    type: bool
  policy:
    description:
      - V(private) (the default) means no bucket policy at all; an existing one is removed.
        Access is then only by the server's own keys. V(null) means the same.
      - A policy document (a dict, or its JSON as a string) is set as the bucket policy. It is
        compared with the current one by meaning (a one-item list equals that item, the order
        of actions and resources does not matter), so a server that reformats it does not
        make the task report a change.
    type: raw
    default: private
  lifecycle_rules:
    description:
      - Lifecycle expiration rules; they replace every rule of the bucket.
      - Unset (V(null)) leaves the rules as they are; V([]) removes all rules.
    type: list
    elements: dict
    suboptions:
      id:
        description: Rule ID, unique in the bucket.
        type: str
        required: true
      prefix:
        description: Key prefix the rule applies to; V('') is every object.
        type: str
        default: ''
      expiration_days:
        description: Days after creation when current objects expire (at least 1).
        type: int
      noncurrent_expiration_days:
        description: Days after which non-current versions are removed (at least 1; versioned buckets).
        type: int
      status:
        description: Whether the rule is active.
        type: str
        choices: [Enabled, Disabled]
        default: Enabled
  force:
    description:
      - With O(state=absent), delete every object, object version, delete marker and
        unfinished multipart upload first.
      - Without it, deleting a bucket that holds anything fails with a clear message, even on
        servers (such as SeaweedFS) that would delete a non-empty bucket.
    type: bool
    default: false
  timeout:
    description: Connect and read timeout of each request, in seconds.
    type: int
    default: 10
notes:
  - Why not M(amazon.aws.s3_bucket)? It was tried against SeaweedFS 4.48 (amazon.aws 10.1.2,
    boto3 1.44). Creating a bucket and setting versioning and a policy work, but it has no
    check mode (the task is skipped under C(--check)) and no diff; it cannot manage lifecycle
    rules (that is M(community.aws.s3_lifecycle), another collection); removing a policy with
    O(policy=null) deletes it and then waits 60 seconds and fails with
    C(Bucket policy failed to apply in the expected time); wrong credentials are reported as
    C(Failed to determine if bucket exisits (permission denied) ... 403 Forbidden) without
    saying that the key was refused; and it requires boto3/botocore 1.34 or later, while
    Debian 12 ships python3-boto3 1.26. This module needs only boto3 as Debian packages it.
  - Verified against SeaweedFS 4.48 (with C(-s3.config) identities) by the collection's
    integration tests, through this module - creating and deleting buckets, versioning
    (Enabled, then Suspended), bucket policies (a public-read policy lets an anonymous GET
    through, and V(private) refuses it again with 403), lifecycle expiration rules (set,
    changed, removed; the server keeps and returns them), deleting a non-empty versioned
    bucket with O(force), refusing it without, and keys limited to one bucket.
  - Whether expired objects are then removed is the server's business; SeaweedFS applies
    lifecycle rules with its own background process.
  - A server that lacks a feature answers C(NotImplemented); the module then fails with
    C(the endpoint ... does not support <feature>) if the option asks for that feature, and
    reports the feature as V(null) in RV(bucket) if the option is unset.
  - Bucket ownership, ACLs, encryption, object lock, tags and public access blocks are not
    managed.
seealso:
  - name: S3 bucket naming rules
    description: The rules the name is checked against.
    link: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
"""

EXAMPLES = r"""
- name: Dify's bucket, private, with versioning and a clean-up rule for old versions
  selfhost.dify.s3_bucket:
    endpoint_url: http://127.0.0.1:8333
    access_key: "{{ seaweedfs_admin_access_key }}"
    secret_key: "{{ seaweedfs_admin_secret_key }}"
    name: dify
    versioning: true
    lifecycle_rules:
      - id: old-versions
        noncurrent_expiration_days: 30
      - id: tmp
        prefix: tmp/
        expiration_days: 7

- name: A bucket whose objects anyone may read
  selfhost.dify.s3_bucket:
    endpoint_url: https://s3.example.com
    ca_bundle: /etc/ssl/certs/internal-ca.pem
    access_key: "{{ s3_access_key }}"
    secret_key: "{{ s3_secret_key }}"
    name: public-assets
    policy:
      Version: "2012-10-17"
      Statement:
        - Sid: PublicRead
          Effect: Allow
          Principal: "*"
          Action: s3:GetObject
          Resource: arn:aws:s3:::public-assets/*

- name: Remove every lifecycle rule, leave versioning and policy as they are
  selfhost.dify.s3_bucket:
    endpoint_url: http://127.0.0.1:8333
    access_key: "{{ seaweedfs_admin_access_key }}"
    secret_key: "{{ seaweedfs_admin_secret_key }}"
    name: dify
    policy: private
    lifecycle_rules: []

- name: Delete a bucket and everything in it
  selfhost.dify.s3_bucket:
    endpoint_url: http://127.0.0.1:8333
    access_key: "{{ seaweedfs_admin_access_key }}"
    secret_key: "{{ seaweedfs_admin_secret_key }}"
    name: scratch
    state: absent
    force: true
"""

RETURN = r"""
bucket:
  description:
    - The bucket as the endpoint reports it after the task (in check mode, as it would be).
    - A feature the endpoint does not support, or the key may not read, is V(null) when its
      option was unset.
  returned: always
  type: dict
  contains:
    name:
      description: The bucket name.
      type: str
      sample: dify
    exists:
      description: Whether the bucket exists.
      type: bool
      sample: true
    versioning:
      description: V(Enabled), V(Suspended) or V(Disabled) (never versioned); V(null) if the bucket does not exist.
      type: str
      sample: Enabled
    policy:
      description: The bucket policy document (normalized), or V(null) when there is none (private).
      type: dict
      sample: null
    lifecycle_rules:
      description:
        - The lifecycle rules, sorted by id, in the form of O(lifecycle_rules).
        - A rule with parts this module does not manage (transitions, tag filters...) lists them in C(unmanaged).
      type: list
      elements: dict
      sample:
        - id: old-versions
          prefix: ""
          status: Enabled
          expiration_days: null
          noncurrent_expiration_days: 30
"""

import copy
import json
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.selfhost.dify.plugins.module_utils.s3 import (
    NAME_RULE,
    bucket_name_errors,
    bucket_state,
    describe_error,
    error_kind,
    normalize_lifecycle_rules,
    normalize_policy,
    parse_policy,
    policies_equal,
    rules_from_api,
    rules_to_api,
)

BOTO3_IMPORT_ERROR = None
try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    BOTO3_IMPORT_ERROR = traceback.format_exc()

    class BotoCoreError(Exception):  # stand-ins that keep the except clauses valid; never raised
        pass

    class ClientError(Exception):
        pass

# Objects per DeleteObjects request (the S3 maximum).
DELETE_BATCH = 1000


def _allowed_on_read(managed, absent=()):
    """Error kinds a read may meet without failing: `absent` (the setting is not there), and
    for a setting the task does not manage, a server that lacks it or a key that may not read it."""
    return tuple(absent) + (() if managed else ("not_implemented", "access_denied"))


class S3Bucket:
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.name = module.params["name"]
        self.endpoint = module.params["endpoint_url"]
        self.region = module.params["region"]

    # -- calls -------------------------------------------------------------------------------
    def fail(self, exc, operation):
        self.module.fail_json(msg=describe_error(exc, operation, self.name, self.endpoint, self.region))

    def call(self, operation, method, allow=(), **kwargs):
        """Run one client method; a ClientError whose kind is in `allow` is returned
        (the caller decides), any other failure ends the module with a clear message."""
        try:
            return getattr(self.client, method)(**kwargs)
        except ClientError as exc:
            if error_kind(exc) in allow:
                return exc
            if error_kind(exc) == "access_denied":
                self.check_credentials(exc, operation)
            self.fail(exc, operation)
        except (BotoCoreError, ValueError) as exc:  # connection, TLS, parameters
            self.fail(exc, operation)
        return None  # not reached: fail_json exits

    def check_credentials(self, denied, operation):
        """A 403 may mean a refused key (a HEAD answer has no body to tell): ask ListBuckets,
        whose answer names the reason, and fail with the credential error if it is one."""
        try:
            self.client.list_buckets()
        except ClientError as exc:
            if error_kind(exc) == "credentials":
                self.fail(exc, "ListBuckets")
        except BotoCoreError:
            pass
        self.fail(denied, operation)

    # -- reading -------------------------------------------------------------------------------
    def exists(self):
        result = self.call("HeadBucket", "head_bucket", allow=("not_found", "no_such_bucket"), Bucket=self.name)
        return not isinstance(result, ClientError)

    def read_versioning(self, managed):
        result = self.call("GetBucketVersioning", "get_bucket_versioning", allow=_allowed_on_read(managed),
                           Bucket=self.name)
        if isinstance(result, ClientError):
            return None
        status = result.get("Status")
        return status if status in ("Enabled", "Suspended") else "Disabled"

    def read_policy(self, managed):
        allow = _allowed_on_read(managed, ("not_found", "no_such_bucket"))
        result = self.call("GetBucketPolicy", "get_bucket_policy", allow=allow, Bucket=self.name)
        if isinstance(result, ClientError):
            # NoSuchBucketPolicy (404): no policy, the bucket is private.
            return None
        text = result.get("Policy")
        if not text:
            return None
        try:
            return normalize_policy(text)
        except ValueError:
            self.module.fail_json(msg="s3_bucket: the endpoint returned a bucket policy for %r that is not JSON: %r"
                                  % (self.name, text[:200]))
        return None

    def read_lifecycle(self, managed):
        allow = _allowed_on_read(managed, ("not_found", "no_such_bucket"))
        result = self.call("GetBucketLifecycleConfiguration", "get_bucket_lifecycle_configuration",
                           allow=allow, Bucket=self.name)
        if isinstance(result, ClientError):
            kind = error_kind(result)
            # NoSuchLifecycleConfiguration (404): no rules.
            return [] if kind in ("not_found", "no_such_bucket") else None
        return rules_from_api(result.get("Rules"))

    def read(self, manage_versioning, manage_policy, manage_lifecycle):
        if not self.exists():
            return bucket_state(False, name=self.name)
        return bucket_state(
            True,
            versioning=self.read_versioning(manage_versioning),
            policy=self.read_policy(manage_policy),
            lifecycle_rules=self.read_lifecycle(manage_lifecycle),
            name=self.name,
        )

    # -- changing ------------------------------------------------------------------------------
    def create(self):
        kwargs = {"Bucket": self.name}
        if self.region and self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        result = self.call("CreateBucket", "create_bucket", allow=("other",), **kwargs)
        if isinstance(result, ClientError):
            code = result.response.get("Error", {}).get("Code")
            if code == "BucketAlreadyOwnedByYou":  # created meanwhile by this key: fine
                return
            if code == "BucketAlreadyExists":
                self.module.fail_json(msg="s3_bucket: the bucket name %r is taken by another account on %s: "
                                      "choose another name" % (self.name, self.endpoint))
            self.fail(result, "CreateBucket")

    def set_versioning(self, status):
        self.call("PutBucketVersioning", "put_bucket_versioning", Bucket=self.name,
                  VersioningConfiguration={"Status": status})

    def set_policy(self, policy):
        if policy is None:
            self.call("DeleteBucketPolicy", "delete_bucket_policy", Bucket=self.name)
        else:
            self.call("PutBucketPolicy", "put_bucket_policy", Bucket=self.name, Policy=json.dumps(policy))

    def set_lifecycle(self, rules):
        if rules:
            self.call("PutBucketLifecycleConfiguration", "put_bucket_lifecycle_configuration", Bucket=self.name,
                      LifecycleConfiguration=rules_to_api(rules))
        else:
            self.call("DeleteBucketLifecycle", "delete_bucket_lifecycle", Bucket=self.name)

    # -- emptying and deleting -----------------------------------------------------------------
    def _versions(self, max_keys=None):
        """(key, version id or None) of everything in the bucket, page by page; falls back to
        plain listing on a server without ListObjectVersions."""
        marker = {}
        while True:
            kwargs = dict(Bucket=self.name, **marker)
            if max_keys:
                kwargs["MaxKeys"] = max_keys
            page = self.call("ListObjectVersions", "list_object_versions", allow=("not_implemented",), **kwargs)
            if isinstance(page, ClientError):
                yield from self._objects(max_keys)
                return
            for item in (page.get("Versions") or []) + (page.get("DeleteMarkers") or []):
                yield item["Key"], item.get("VersionId")
            if max_keys or not page.get("IsTruncated"):
                return
            marker = {"KeyMarker": page.get("NextKeyMarker")}
            if page.get("NextVersionIdMarker"):
                marker["VersionIdMarker"] = page["NextVersionIdMarker"]

    def _objects(self, max_keys=None):
        token = None
        while True:
            kwargs = {"Bucket": self.name}
            if token:
                kwargs["ContinuationToken"] = token
            if max_keys:
                kwargs["MaxKeys"] = max_keys
            page = self.call("ListObjectsV2", "list_objects_v2", **kwargs)
            for item in page.get("Contents") or []:
                yield item["Key"], None
            if max_keys or not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def first_content(self):
        """Something the bucket holds (an object, version or delete marker), or None."""
        for key, dummy in self._versions(max_keys=1):
            return key
        for key, dummy in self._objects(max_keys=1):
            return key
        return None

    def _delete_batch(self, batch):
        objects = [{"Key": key, "VersionId": version} if version else {"Key": key} for key, version in batch]
        result = self.call("DeleteObjects", "delete_objects", Bucket=self.name,
                           Delete={"Objects": objects, "Quiet": True})
        errors = result.get("Errors") or []
        if errors:
            first = errors[0]
            self.module.fail_json(msg="s3_bucket: could not delete %d object(s) of bucket %r, e.g. %r (%s: %s)"
                                  % (len(errors), self.name, first.get("Key"), first.get("Code"),
                                     first.get("Message")))

    def empty(self):
        """Delete every object version, delete marker, object and unfinished upload."""
        for lister in (self._versions, self._objects):
            batch = []
            for item in lister():
                batch.append(item)
                if len(batch) == DELETE_BATCH:
                    self._delete_batch(batch)
                    batch = []
            if batch:
                self._delete_batch(batch)
        uploads = self.call("ListMultipartUploads", "list_multipart_uploads",
                            allow=("not_implemented",), Bucket=self.name)
        if not isinstance(uploads, ClientError):
            for upload in uploads.get("Uploads") or []:
                self.call("AbortMultipartUpload", "abort_multipart_upload", allow=("not_found",),
                          Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"])

    def delete(self):
        self.call("DeleteBucket", "delete_bucket", Bucket=self.name)


def argument_spec():
    return dict(
        endpoint_url=dict(type="str", required=True),
        access_key=dict(type="str", required=True, no_log=True),
        secret_key=dict(type="str", required=True, no_log=True),
        region=dict(type="str", default="us-east-1"),
        path_style=dict(type="bool", default=True),
        validate_certs=dict(type="bool", default=True),
        ca_bundle=dict(type="path"),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        versioning=dict(type="bool"),
        policy=dict(type="raw", default="private"),
        lifecycle_rules=dict(
            type="list", elements="dict",
            options=dict(
                id=dict(type="str", required=True),
                prefix=dict(type="str", default=""),
                expiration_days=dict(type="int"),
                noncurrent_expiration_days=dict(type="int"),
                status=dict(type="str", choices=["Enabled", "Disabled"], default="Enabled"),
            ),
        ),
        force=dict(type="bool", default=False),
        timeout=dict(type="int", default=10),
    )


def validate(params):
    """All input errors at once, before any request: (errors, policy, rules)."""
    errors = []
    name_errors = bucket_name_errors(params["name"])
    if name_errors:
        errors.append("name %r is not a valid S3 bucket name: %s (bucket names are %s)"
                      % (params["name"], "; ".join(name_errors), NAME_RULE))
    policy = rules = None
    try:
        policy = normalize_policy(parse_policy(params["policy"]))
    except ValueError as exc:
        errors.append(str(exc))
    try:
        rules = normalize_lifecycle_rules(params["lifecycle_rules"])
    except ValueError as exc:
        errors.append(str(exc))
    if params["timeout"] < 1:
        errors.append("timeout must be at least 1 second, got %d" % params["timeout"])
    endpoint = params["endpoint_url"] or ""
    if not endpoint.startswith(("http://", "https://")):
        errors.append("endpoint_url must be an http:// or https:// URL, got %r" % endpoint)
    return errors, policy, rules


def make_client(params):
    verify = (params["ca_bundle"] or True) if params["validate_certs"] else False
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if params["path_style"] else "virtual"},
        connect_timeout=params["timeout"],
        read_timeout=params["timeout"],
        retries={"total_max_attempts": 2, "mode": "standard"},
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=params["endpoint_url"],
        aws_access_key_id=params["access_key"],
        aws_secret_access_key=params["secret_key"],
        region_name=params["region"],
        verify=verify,
        config=config,
    )


def desired_state(before, versioning, policy, rules):
    """The bucket after the task, and the changes that lead there (in order)."""
    after = copy.deepcopy(before)
    changes = []
    if not after["exists"]:
        changes.append(("create", None))
        after.update(exists=True, versioning="Disabled", policy=None, lifecycle_rules=[])
    if versioning is True and after["versioning"] != "Enabled":
        changes.append(("versioning", "Enabled"))
        after["versioning"] = "Enabled"
    elif versioning is False and after["versioning"] == "Enabled":
        changes.append(("versioning", "Suspended"))
        after["versioning"] = "Suspended"
    if not policies_equal(after["policy"], policy):
        changes.append(("policy", policy))
        after["policy"] = policy
    if rules is not None and after["lifecycle_rules"] != rules:
        changes.append(("lifecycle", rules))
        after["lifecycle_rules"] = rules
    return after, changes


def apply_changes(bucket, changes):
    for what, value in changes:
        if what == "create":
            bucket.create()
        elif what == "versioning":
            bucket.set_versioning(value)
        elif what == "policy":
            bucket.set_policy(value)
        elif what == "lifecycle":
            bucket.set_lifecycle(value)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params

    errors, policy, rules = validate(params)
    if errors:
        module.fail_json(msg="s3_bucket: " + "; ".join(errors))
    if BOTO3_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("boto3", reason="to talk to the S3 endpoint")
                         + " On Debian/Ubuntu: apt install python3-boto3.", exception=BOTO3_IMPORT_ERROR)

    try:
        client = make_client(params)
    except (BotoCoreError, ValueError) as exc:
        module.fail_json(msg="s3_bucket: cannot set up an S3 client for %s: %s" % (params["endpoint_url"], exc))
    bucket = S3Bucket(module, client)
    present = params["state"] == "present"

    before = bucket.read(manage_versioning=present and params["versioning"] is not None,
                         manage_policy=present,
                         manage_lifecycle=present and rules is not None)

    if present:
        after, changes = desired_state(before, params["versioning"], policy, rules)
        if changes and not module.check_mode:
            apply_changes(bucket, changes)
            planned = after
            after = bucket.read(manage_versioning=params["versioning"] is not None, manage_policy=True,
                                manage_lifecycle=rules is not None)
            unkept = [label for label, kept in (
                ("versioning", params["versioning"] is None or after["versioning"] == planned["versioning"]),
                ("policy", policies_equal(after["policy"], policy)),
                ("lifecycle rules", rules is None or after["lifecycle_rules"] == rules),
            ) if not kept]
            if unkept:
                module.warn("s3_bucket: the endpoint accepted the change but reports different %s for bucket %r "
                            "when read back" % (" and ".join(unkept), bucket.name))
    else:
        after = bucket_state(False, name=bucket.name)
        changes = []
        if before["exists"]:
            changes.append(("delete", None))
            content = bucket.first_content()
            if content is not None and not params["force"]:
                module.fail_json(msg="s3_bucket: bucket %r is not empty (it holds %r, maybe more, or its versions): "
                                 "set force: true to delete its objects and their versions with it" % (bucket.name,
                                                                                                       content))
            if not module.check_mode:
                if content is not None:
                    bucket.empty()
                bucket.delete()

    result = dict(changed=bool(changes), bucket=after)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
