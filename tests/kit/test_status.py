"""Domain errors as gRPC statuses: the metadata a gateway turns into HTTP headers."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from services.kit.domain.errors import NotFound, ResourceExhausted
from services.kit.grpc.status import to_grpc_status


def test_resource_exhausted_says_when_to_retry_in_whole_seconds() -> None:
    status = to_grpc_status(ResourceExhausted("too many attempts", retry_after_seconds=1.2))
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    metadata = dict(status.trailing_metadata)
    assert metadata["retry-after"] == "2"
    details = status_pb2.Status.FromString(metadata["grpc-status-details-bin"]).details
    retry_info = error_details_pb2.RetryInfo()
    assert details[0].Unpack(retry_info)
    assert retry_info.retry_delay.ToNanoseconds() == 1_200_000_000


def test_no_retry_after_without_a_delay() -> None:
    for error in (ResourceExhausted("busy"), NotFound("expense", "e1")):
        assert "retry-after" not in dict(to_grpc_status(error).trailing_metadata)
