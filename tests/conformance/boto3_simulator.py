#!/usr/bin/env python3
"""Checks the simulator's wire format with boto3, an independent HealthImaging client.

Usage: boto3_simulator.py ENDPOINT_URL

The simulator must be running an empty or any scenario; this script creates its own
datastores and image sets through the control API, reads them with boto3's get_image_set,
list_datastores, get_datastore, search_image_sets and list_image_set_versions (with
boto3's paginators), and checks every field and every error mapping. Exits non-zero on
the first mismatch.
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
DS2 = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"


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

    discovery(endpoint, mi)

    control(endpoint, "DELETE", f"datastore/{DS}/imageSet/{IS}")
    expect_error(lambda: mi.get_image_set(datastoreId=DS, imageSetId=IS), "ResourceNotFoundException", 404)
    print(f"boto3 {boto3.__version__} / botocore {botocore.__version__}: simulator conformance ok")


def discovery(endpoint, mi):
    """ListDatastores, GetDatastore, SearchImageSets and ListImageSetVersions."""
    control(endpoint, "PUT", f"datastore/{DS2}", {"datastoreName": "boto3-store", "datastoreStatus": "ACTIVE"})
    sets = [f"{n:x}" * 32 for n in range(1, 6)]
    for n, image_set in enumerate(sets):
        control(endpoint, "PUT", f"datastore/{DS2}/imageSet/{image_set}", {
            "imageSetWorkflowStatus": "IMPORTED",
            "isPrimary": n != 0,
            "DICOMTags": {"DICOMPatientId": f"PID-{n}", "DICOMPatientName": "DOE^JANE", "DICOMSeriesNumber": n},
        })
    wire = {s["imageSetId"]: s for s in control(endpoint, "GET", "image-sets")["imageSets"] if s["datastoreId"] == DS2}

    # ListDatastores: every datastore, through the paginator one at a time.
    pages = list(mi.get_paginator("list_datastores").paginate(PaginationConfig={"PageSize": 1}))
    summaries = [d for page in pages for d in page["datastoreSummaries"]]
    assert [d["datastoreId"] for d in summaries] == sorted({DS, DS2}), summaries
    assert len(pages) == 2, f"one datastore a page: {pages}"
    mine = next(d for d in summaries if d["datastoreId"] == DS2)
    assert mine["datastoreName"] == "boto3-store"
    assert mine["datastoreStatus"] == "ACTIVE"
    assert mine["datastoreArn"] == f"arn:aws:medical-imaging:us-east-1:123456789012:datastore/{DS2}"
    assert isinstance(mine["createdAt"], datetime.datetime) and isinstance(mine["updatedAt"], datetime.datetime)
    assert mine["createdAt"] <= mine["updatedAt"]
    assert mi.list_datastores(datastoreStatus="DELETING")["datastoreSummaries"] == []

    # GetDatastore.
    props = mi.get_datastore(datastoreId=DS2)["datastoreProperties"]
    assert props["datastoreName"] == "boto3-store" and props["datastoreStatus"] == "ACTIVE", props
    control(endpoint, "PUT", f"datastore/{DS2}", {"datastoreStatus": "DELETING"})
    assert mi.get_datastore(datastoreId=DS2)["datastoreProperties"]["datastoreStatus"] == "DELETING"
    assert [d["datastoreId"] for d in mi.list_datastores(datastoreStatus="DELETING")["datastoreSummaries"]] == [DS2]
    control(endpoint, "PUT", f"datastore/{DS2}", {"datastoreStatus": "ACTIVE"})

    # SearchImageSets: a BETWEEN updatedAt filter, a sort, and the paginator.
    times = [wire[s]["updatedAt"] for s in sets]
    lo = datetime.datetime.fromtimestamp(int(min(times)) - 1, tz=datetime.timezone.utc)
    hi = datetime.datetime.fromtimestamp(int(max(times)) + 2, tz=datetime.timezone.utc)
    criteria = {
        "filters": [{"values": [{"updatedAt": lo}, {"updatedAt": hi}], "operator": "BETWEEN"}],
        "sort": {"sortOrder": "ASC", "sortField": "updatedAt"},
    }
    pages = list(mi.get_paginator("search_image_sets").paginate(
        datastoreId=DS2, searchCriteria=criteria, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3, f"5 image sets, 2 a page: {len(pages)} pages"
    assert all(page["sort"] == {"sortOrder": "ASC", "sortField": "updatedAt"} for page in pages)
    found = [s for page in pages for s in page["imageSetsMetadataSummaries"]]
    assert [s["imageSetId"] for s in found] == sorted(sets, key=lambda s: (wire[s]["updatedAt"], s)), found
    first = next(s for s in found if s["imageSetId"] == sets[0])
    assert first["version"] == 1 and isinstance(first["version"], int)
    assert first["isPrimary"] is False
    assert first["storageTier"] == "FREQUENT_ACCESS"
    assert isinstance(first["updatedAt"], datetime.datetime)
    assert abs(first["updatedAt"].timestamp() - wire[sets[0]]["updatedAt"]) < 0.001
    assert first["DICOMTags"] == {"DICOMPatientId": "PID-0", "DICOMPatientName": "DOE^JANE", "DICOMSeriesNumber": 0}
    assert "imageSetWorkflowStatus" not in first, "SearchImageSets has no workflow status"
    newest = mi.search_image_sets(datastoreId=DS2)
    assert "sort" not in newest, "sort is echoed only when given"
    assert [s["imageSetId"] for s in newest["imageSetsMetadataSummaries"]] == \
        sorted(sets, key=lambda s: (wire[s]["updatedAt"], s), reverse=True), "default: updatedAt, newest first"
    old = {"filters": [{"values": [{"updatedAt": datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)},
                                   {"updatedAt": datetime.datetime(2001, 1, 2, tzinfo=datetime.timezone.utc)}],
                        "operator": "BETWEEN"}]}
    assert mi.search_image_sets(datastoreId=DS2, searchCriteria=old)["imageSetsMetadataSummaries"] == []
    by_patient = {"filters": [{"values": [{"DICOMPatientId": "PID-3"}], "operator": "EQUAL"}]}
    hits = mi.search_image_sets(datastoreId=DS2, searchCriteria=by_patient)["imageSetsMetadataSummaries"]
    assert [s["imageSetId"] for s in hits] == [sets[3]], hits
    assert "DICOMTags" not in mi.get_image_set(datastoreId=DS2, imageSetId=sets[3]), "GetImageSet has no DICOM tags"

    # ListImageSetVersions: every version, newest first, with the capital-I status key.
    control(endpoint, "PUT", f"datastore/{DS2}/imageSet/{sets[1]}", {"imageSetWorkflowStatus": "UPDATE_FAILED", "message": "bad update"})
    control(endpoint, "PUT", f"datastore/{DS2}/imageSet/{sets[1]}", {"versionId": "2", "imageSetWorkflowStatus": "UPDATING"})
    control(endpoint, "PUT", f"datastore/{DS2}/imageSet/{sets[1]}", {"versionId": "3", "imageSetWorkflowStatus": "UPDATED", "overrides": {"forced": True}})
    pages = list(mi.get_paginator("list_image_set_versions").paginate(
        datastoreId=DS2, imageSetId=sets[1], PaginationConfig={"PageSize": 2}))
    versions = [v for page in pages for v in page["imageSetPropertiesList"]]
    assert len(pages) == 2
    assert [v["versionId"] for v in versions] == ["3", "2", "1"], versions
    assert [v["ImageSetWorkflowStatus"] for v in versions] == ["UPDATED", "UPDATING", "UPDATE_FAILED"], versions
    assert versions[2]["message"] == "bad update"
    assert versions[0]["overrides"] == {"forced": True}
    assert all(v["imageSetState"] == "ACTIVE" and v["imageSetId"] == sets[1] for v in versions)
    assert versions[0]["updatedAt"] > versions[1]["updatedAt"] > versions[2]["updatedAt"]

    # Errors of the discovery operations.
    e = expect_error(lambda: mi.get_datastore(datastoreId="9" * 32), "ResourceNotFoundException", 404)
    assert isinstance(e, mi.exceptions.ResourceNotFoundException)
    e = expect_error(lambda: mi.get_datastore(datastoreId="x" * 5), "ValidationException", 400)
    assert isinstance(e, mi.exceptions.ValidationException)
    expect_error(lambda: mi.list_datastores(maxResults=51), "ValidationException", 400)
    expect_error(lambda: mi.list_datastores(nextToken="garbage"), "ValidationException", 400)
    expect_error(lambda: mi.search_image_sets(datastoreId="9" * 32), "ResourceNotFoundException", 404)
    expect_error(lambda: mi.search_image_sets(datastoreId=DS2, nextToken="garbage"), "ValidationException", 400)
    expect_error(lambda: mi.search_image_sets(datastoreId=DS2, maxResults=51), "ValidationException", 400)
    three = {"filters": by_patient["filters"] * 3}
    expect_error(lambda: mi.search_image_sets(datastoreId=DS2, searchCriteria=three), "ValidationException", 400)
    two_equal = {"filters": [{"values": [{"updatedAt": lo}, {"updatedAt": hi}], "operator": "EQUAL"}]}
    expect_error(lambda: mi.search_image_sets(datastoreId=DS2, searchCriteria=two_equal), "ValidationException", 400)
    e = expect_error(lambda: mi.list_image_set_versions(datastoreId=DS2, imageSetId="9" * 32), "ResourceNotFoundException", 404)
    assert isinstance(e, mi.exceptions.ResourceNotFoundException)
    control(endpoint, "PUT", "faults", {"throttleRatio": 1.0})
    for call in (lambda: mi.list_datastores(), lambda: mi.search_image_sets(datastoreId=DS2),
                 lambda: mi.list_image_set_versions(datastoreId=DS2, imageSetId=sets[1])):
        expect_error(call, "ThrottlingException", 429)
    control(endpoint, "PUT", "faults", {})
    stats = control(endpoint, "GET", "stats")["requests"]
    for operation in ("ListDatastores", "GetDatastore", "SearchImageSets", "ListImageSetVersions"):
        assert stats[operation]["success"] > 0, stats
        throttled = stats[operation].get("ThrottlingException", 0)
        assert (throttled == 0) == (operation == "GetDatastore"), stats


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1].rstrip("/"))
