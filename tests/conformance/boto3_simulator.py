#!/usr/bin/env python3
"""Checks the simulator's wire format with boto3, an independent HealthImaging client.

Usage: boto3_simulator.py ENDPOINT_URL

The simulator must be running an empty or any scenario; this script creates its own image
sets through the control API, reads them with boto3's get_image_set, and checks every
field and every error mapping. Exits non-zero on the first mismatch.
"""
import datetime
import json
import sys
import urllib.request

import boto3
import botocore
from botocore.config import Config

DS = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
IS = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"


def control(endpoint, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(endpoint + "/_simulator/" + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def client(endpoint, **extra):
    return boto3.client(
        "medical-imaging",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDBOTO3TEST",
        aws_secret_access_key="secret",
        config=Config(inject_host_prefix=False, retries={"max_attempts": 1, "mode": "standard"}, **extra),
    )


def expect_error(call, exception_name, status):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        code = e.response["Error"]["Code"]
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert code == exception_name, f"expected {exception_name}, got {code}"
        assert got_status == status, f"{exception_name}: expected HTTP {status}, got {got_status}"
        assert e.response["Error"]["Message"], f"{exception_name} has no message"
        assert e.response["ResponseMetadata"].get("RequestId"), f"{exception_name} has no request id"
        return e
    raise AssertionError(f"expected {exception_name}, the call succeeded")


def main(endpoint):
    mi = client(endpoint)
    control(endpoint, "PUT", f"datastore/{DS}/imageSet/{IS}", {
        "imageSetWorkflowStatus": "IMPORT_FAILED",
        "imageSetState": "LOCKED",
        "storageTier": "ARCHIVE_INSTANT_ACCESS",
        "message": "Import failed: 2 instances unreadable",
        "overrides": {"forced": True},
        "isPrimary": False,
        "lastAccessedAt": 1700000000.5,
    })
    control(endpoint, "PUT", f"datastore/{DS}/imageSet/{IS}", {"versionId": "2", "imageSetState": "DELETED"})
    wire = next(s for s in control(endpoint, "GET", "image-sets")["imageSets"] if s["imageSetId"] == IS)

    got = mi.get_image_set(datastoreId=DS, imageSetId=IS)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["ResponseMetadata"]["RequestId"], "no request id"
    assert got["datastoreId"] == DS
    assert got["imageSetId"] == IS
    assert got["versionId"] == "2"
    assert got["imageSetState"] == "DELETED"
    assert got["imageSetWorkflowStatus"] == "IMPORT_FAILED"
    assert got["storageTier"] == "ARCHIVE_INSTANT_ACCESS"
    assert got["isPrimary"] is False
    assert got["overrides"] == {"forced": True}
    assert "message" not in got, "a new version starts without the old failure message"
    assert got["imageSetArn"] == f"arn:aws:medical-imaging:us-east-1:123456789012:datastore/{DS}/imageset/{IS}"
    for field in ("createdAt", "updatedAt", "deletedAt", "lastAccessedAt"):
        value = got[field]
        assert isinstance(value, datetime.datetime), f"{field} parsed as {type(value)}"
        assert abs(value.timestamp() - wire[field]) < 0.001, f"{field}: {value} vs {wire[field]}"
    assert abs(got["lastAccessedAt"].timestamp() - 1700000000.5) < 0.001

    v1 = mi.get_image_set(datastoreId=DS, imageSetId=IS, versionId="1")
    assert v1["versionId"] == "1"
    assert v1["imageSetState"] == "LOCKED"
    assert v1["message"] == "Import failed: 2 instances unreadable"
    assert "deletedAt" not in v1

    # Every error the simulator produces maps to the modelled botocore exception.
    e = expect_error(lambda: mi.get_image_set(datastoreId=DS, imageSetId="x" * 5), "ValidationException", 400)
    assert isinstance(e, mi.exceptions.ValidationException)
    e = expect_error(lambda: mi.get_image_set(datastoreId=DS, imageSetId="9" * 32), "ResourceNotFoundException", 404)
    assert isinstance(e, mi.exceptions.ResourceNotFoundException)
    e = expect_error(lambda: mi.get_image_set(datastoreId=DS, imageSetId=IS, versionId="7"), "ResourceNotFoundException", 404)
    assert isinstance(e, mi.exceptions.ResourceNotFoundException)
    unsigned = client(endpoint, signature_version=botocore.UNSIGNED)
    e = expect_error(lambda: unsigned.get_image_set(datastoreId=DS, imageSetId=IS), "AccessDeniedException", 403)
    assert isinstance(e, mi.exceptions.AccessDeniedException)
    control(endpoint, "PUT", "faults", {"throttleRatio": 1.0})
    e = expect_error(lambda: mi.get_image_set(datastoreId=DS, imageSetId=IS), "ThrottlingException", 429)
    assert isinstance(e, mi.exceptions.ThrottlingException)
    control(endpoint, "PUT", "faults", {"errorRatio": 1.0})
    e = expect_error(lambda: mi.get_image_set(datastoreId=DS, imageSetId=IS), "InternalServerException", 500)
    assert isinstance(e, mi.exceptions.InternalServerException)
    control(endpoint, "PUT", "faults", {})

    control(endpoint, "DELETE", f"datastore/{DS}/imageSet/{IS}")
    expect_error(lambda: mi.get_image_set(datastoreId=DS, imageSetId=IS), "ResourceNotFoundException", 404)
    print(f"boto3 {boto3.__version__} / botocore {botocore.__version__}: simulator conformance ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1].rstrip("/"))
