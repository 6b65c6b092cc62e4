"""The Open Inference Protocol's wire format (service/http/oip_codec.py) on its own, no server: what a body
decodes to, every way it is refused (status, field, detail), and what a response encodes to. The server
tests (test_oip_infer.py) drive the same code through HTTP and tritonclient; these are the fast ones that
pin each rule, so a codec bug fails here first."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import cgan_contract as contract
from service.http import oip_codec
from service.http.oip_codec import HEADER_LENGTH, BadRequest, UnsupportedEncoding, decode, encode

RequestError = oip_codec.RequestError
Z = np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5


def _label(data: list[Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": "label", "shape": [len(data or [])], "datatype": "INT64", "data": data, **fields}


def _json(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **fields}).encode()


def _binary(labels: list[int], z: np.ndarray | None = None, trailing: bytes = b"") -> tuple[bytes, str]:
    """A binary-tensor body (label, then z) and its header length."""
    inputs = [
        {
            "name": "label",
            "shape": [len(labels)],
            "datatype": "INT64",
            "parameters": {"binary_data_size": 8 * len(labels)},
        }
    ]
    data = np.array(labels, "<i8").tobytes()
    if z is not None:
        inputs.append(
            {
                "name": "z",
                "shape": list(z.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": z.nbytes},
            }
        )
        data += z.astype("<f4").tobytes()
    header = json.dumps({"inputs": inputs}).encode()
    return header + data + trailing, str(len(header))


def _refused(body: bytes, header_length: str | None = None, encoding: str | None = None) -> RequestError:
    with pytest.raises(RequestError) as caught:
        decode(body, header_length, encoding)
    return caught.value


# --- decoding ------------------------------------------------------------------------------------------


def test_json_request_decodes_to_its_tensors_and_parameters() -> None:
    body = _json(
        _label([3, 9]),
        {"name": "z", "shape": [2, 3], "datatype": "FP32", "data": Z.ravel().tolist()},
        id="r-1",
        parameters={"seed": 7},
    )
    decoded = decode(body, None)
    assert set(decoded.tensors) == {"label", "z"}
    label, z = decoded.tensors["label"], decoded.tensors["z"]
    assert label.dtype == np.int64 and label.tolist() == [3, 9] and label.shape == (2,)
    assert z.dtype == np.float32 and z.shape == (2, 3)
    np.testing.assert_array_equal(z, Z)
    assert (decoded.seed, decoded.request_id, decoded.binary_output) == (7, "r-1", False)


def test_binary_request_decodes_the_bytes_after_the_header() -> None:
    body, length = _binary([5, 6], Z)
    decoded = decode(body, length)
    assert decoded.tensors["label"].tolist() == [5, 6] and decoded.tensors["label"].dtype == np.int64
    np.testing.assert_array_equal(decoded.tensors["z"], Z)
    assert decoded.tensors["z"].dtype == np.float32 and decoded.tensors["z"].flags.writeable is not None
    assert decoded.seed is None and decoded.request_id is None


def test_the_header_length_may_cover_the_whole_body() -> None:
    body = _json(_label([1]))
    assert decode(body, str(len(body))).tensors["label"].tolist() == [1]
    assert decode(body, None, "identity").tensors["label"].tolist() == [1]
    assert decode(body, None, "").tensors["label"].tolist() == [1]


def test_trailing_bytes_after_the_declared_tensors_are_refused() -> None:
    body, length = _binary([5, 6], Z, trailing=b"\x00")
    error = _refused(body, length)
    assert isinstance(error, BadRequest) and error.status == 400 and error.field == "body"
    assert error.detail == "body: 41 bytes of binary tensor data; the inputs' binary_data_size sum to 40"
    # Bytes after a JSON-only request are trailing bytes too.
    json_only = _json(_label([1]))
    assert _refused(json_only + b"xyz", str(len(json_only))).status == 400


def test_a_body_that_ends_inside_a_tensor_is_refused() -> None:
    body, length = _binary([5, 6], Z)
    error = _refused(body[:-1], length)
    assert isinstance(error, BadRequest) and error.field == "z"
    assert error.detail == "z: the body ends inside this tensor's binary data"
    # Exactly the declared bytes is fine, one short of the first tensor is not.
    header_only, length = _binary([5])
    assert (
        _refused(header_only[:-1], length).detail == "label: the body ends inside this tensor's binary data"
    )


@pytest.mark.parametrize("length", ["x", "-1", "1e3", " 12"])
def test_a_header_length_that_is_not_a_count_within_the_body_is_a_400(length: str) -> None:
    error = _refused(_json(_label([1])), length)
    assert isinstance(error, BadRequest) and error.field == HEADER_LENGTH
    assert error.detail.startswith(f"{HEADER_LENGTH}: {length!r} is not a byte count within the ")


def test_a_header_length_past_the_body_is_a_400() -> None:
    body = _json(_label([1]))
    error = _refused(body, str(len(body) + 1))
    assert error.status == 400 and error.detail.endswith(f"within the {len(body)}-byte body")


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_a_compressed_body_is_a_415(encoding: str) -> None:
    error = _refused(_json(_label([1])), None, encoding)
    assert (
        isinstance(error, UnsupportedEncoding) and error.status == 415 and error.field == "Content-Encoding"
    )
    assert error.detail.startswith(f"Content-Encoding: {encoding!r} is not supported")


@pytest.mark.parametrize(
    ("inputs", "field", "detail"),
    [
        ([{**_label([1]), "name": "labels"}], "inputs[0].name", "inputs[0].name: unknown input 'labels'"),
        ([_label([1]), _label([2])], "inputs[1].name", "inputs[1].name: input 'label' is given twice"),
        ([{**_label([1]), "datatype": "INT32"}], "label", "label: datatype 'INT32'; the model takes INT64"),
        ([{**_label([1]), "shape": [-1]}], "label", "label: shape [-1] has a negative dimension"),
        ([{**_label([1]), "shape": [2]}], "label", "label: 1 values in data, shape [2] needs 2"),
        ([_label([1.5])], "label", "label: data must be integers for INT64"),
        ([_label(["a"])], "label", "label: data must be integers for INT64"),
        ([_label([2**63])], "label", "label: data out of INT64 range"),
        # numpy holds a number below INT64 only as an object, so it is refused as not an integer.
        ([_label([-(2**63) - 1])], "label", "label: data must be integers for INT64"),
        (
            [{**_label([1]), "data": None}],
            "label",
            "label: no data (give data, or binary_data_size and the bytes)",
        ),
        (
            [{"name": "z", "shape": [1, 2], "datatype": "FP32", "data": ["a", "b"]}],
            "z",
            "z: data must be numbers for FP32",
        ),
        (
            [{"name": "z", "shape": [2, 2], "datatype": "FP32", "data": [[1.0], [2.0, 3.0]]}],
            "z",
            "z: data is ragged",
        ),
        (
            [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [0.0, 1.0, 2.0]}],
            "inputs",
            "inputs: the 'label' input (INT64 [N]) is required",
        ),
    ],
)
def test_bad_tensors_are_a_422_naming_the_part_at_fault(inputs: list, field: str, detail: str) -> None:
    error = _refused(_json(*inputs))
    assert error.status == 422 and error.field == field and error.detail.startswith(detail), error.detail


def test_data_in_range_and_every_number_kind_are_accepted() -> None:
    edges = decode(_json(_label([2**63 - 1, -(2**63)])), None).tensors["label"]
    assert edges.tolist() == [2**63 - 1, -(2**63)]
    z = {"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2.5, -3]}
    decoded = decode(_json(_label([0]), z), None).tensors["z"]
    assert decoded.dtype == np.float32 and decoded.tolist() == [[1.0, 2.5, -3.0]]
    empty = decode(_json({**_label([]), "shape": [0]}), None).tensors["label"]
    assert empty.shape == (0,) and empty.dtype == np.int64


@pytest.mark.parametrize(
    ("parameters", "detail"),
    [
        ({"binary_data_size": 16}, "label: give data or binary_data_size, not both"),
        ({"binary_data_size": True}, "label: binary_data_size True; INT64 [1] is 8 bytes"),
        ({"binary_data_size": 9}, "label: binary_data_size 9; INT64 [1] is 8 bytes"),
        ({"binary_data_size": "8"}, "label: binary_data_size '8'; INT64 [1] is 8 bytes"),
    ],
)
def test_a_binary_data_size_that_does_not_fit_is_a_422(parameters: dict, detail: str) -> None:
    data = [1] if "16" in detail or "not both" in detail else None
    tensor = {"name": "label", "shape": [1], "datatype": "INT64", "data": data, "parameters": parameters}
    header = _json(tensor)
    error = _refused(header + b"\x01" * 8, str(len(header)))
    assert error.status == 422 and error.field == "label" and error.detail == detail


@pytest.mark.parametrize("seed", [0, 12, contract.MAX_SEED])
def test_the_seed_parameter(seed: int) -> None:
    assert decode(_json(_label([1]), parameters={"seed": seed}), None).seed == seed
    assert decode(_json(_label([1]), parameters={"seed": None}), None).seed is None


@pytest.mark.parametrize("seed", [-1, contract.MAX_SEED + 1, True, "3", 1.0])
def test_a_bad_seed_parameter_is_a_422(seed: object) -> None:
    error = _refused(_json(_label([1]), parameters={"seed": seed}))
    assert error.status == 422 and error.field == "seed"
    assert error.detail == f"seed: the seed parameter must be an integer in 0..{contract.MAX_SEED}"


@pytest.mark.parametrize(
    ("fields", "binary"),
    [
        ({}, False),
        ({"parameters": {"binary_data_output": True}}, True),
        ({"parameters": {"binary_data_output": 1}}, False),
        ({"outputs": [{"name": "image"}]}, False),
        ({"outputs": [{"name": "image"}], "parameters": {"binary_data_output": True}}, True),
        ({"outputs": [{"name": "image", "parameters": {"binary_data": True}}]}, True),
        (
            {
                "outputs": [{"name": "image", "parameters": {"binary_data": False}}],
                "parameters": {"binary_data_output": True},
            },
            False,
        ),
        ({"outputs": [{"name": "image", "parameters": {"binary_data": "yes"}}]}, False),
        ({"outputs": []}, False),
    ],
)
def test_binary_output_is_what_the_request_asks_for(fields: dict, binary: bool) -> None:
    assert decode(_json(_label([1]), **fields), None).binary_output is binary


@pytest.mark.parametrize(
    ("output", "field", "detail"),
    [
        (
            {"name": "images"},
            "outputs[0].name",
            "outputs[0].name: unknown output 'images'; the model has 'image'",
        ),
        (
            {"name": "image", "parameters": {"classification": 3}},
            "outputs[0].parameters",
            "outputs[0].parameters.classification: not supported",
        ),
    ],
)
def test_an_output_the_model_does_not_have_is_a_422(output: dict, field: str, detail: str) -> None:
    error = _refused(_json(_label([1]), outputs=[output]))
    assert error.status == 422 and (error.field, error.detail) == (field, detail)


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        (b"{not json", "body", "body: the inference request is not valid JSON"),
        (b"", "body", "body: the inference request is not valid JSON"),
        (b"[]", "body", "body: Input should be an object"),
        (b'{"inputs": []}', "inputs", "inputs: List should have at least 1 item after validation, not 0"),
        (b'{"inputs": [{"name": "label", "shape": "2", "datatype": "INT64"}]}', "inputs[0].shape", None),
        (b'{"inputs": [{"name": 1, "shape": [1], "datatype": "INT64"}]}', "inputs[0].name", None),
        (
            b'{"id": 4, "inputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}]}',
            "id",
            None,
        ),
    ],
)
def test_a_header_that_is_not_an_inference_request_is_a_422_naming_the_field(
    body: bytes, field: str, detail: str | None
) -> None:
    error = _refused(body)
    assert error.status == 422 and error.field == field, error.detail
    assert error.detail == detail if detail else error.detail.startswith(f"{field}: ")


def test_only_the_header_is_parsed_as_json() -> None:
    # Binary bytes that happen to be invalid UTF-8 or JSON are never read as part of the header.
    body, length = _binary([5], trailing=b"")
    assert decode(body, length).tensors["label"].tolist() == [5]
    label = np.array([-1], "<i8").tobytes()  # 0xff... bytes
    header = body[: int(length)]
    assert decode(header + label, length).tensors["label"].tolist() == [-1]


# --- encoding ------------------------------------------------------------------------------------------


MODEL = SimpleNamespace(name="digits", version=3, card=SimpleNamespace(image_shape=(2, 2, 1)))


def _images(n: int) -> np.ndarray:
    return (np.arange(n * 4, dtype=np.uint8) * 17).reshape(n, 2, 2, 1)


def test_json_response_carries_the_pixels_as_data() -> None:
    body = encode("r-1", False, MODEL, 7, _images(2))  # type: ignore[arg-type]
    assert json.loads(body) == {
        "model_name": "digits",
        "model_version": "3",
        "id": "r-1",
        "parameters": {"seed": 7},
        "outputs": [
            {"name": "image", "datatype": "UINT8", "shape": [2, 2, 2, 1], "data": _images(2).ravel().tolist()}
        ],
    }


def test_binary_response_is_the_header_then_the_pixel_bytes() -> None:
    images = _images(3)
    body = encode(None, True, MODEL, None, images)  # type: ignore[arg-type]
    size = oip_codec.binary_size(MODEL, 3)  # type: ignore[arg-type]
    assert size == images.nbytes == 12
    header = json.loads(body[:-size])
    assert header == {
        "model_name": "digits",
        "model_version": "3",
        "outputs": [
            {
                "name": "image",
                "datatype": "UINT8",
                "shape": [3, 2, 2, 1],
                "parameters": {"binary_data_size": 12},
            }
        ],
    }
    assert body[-size:] == images.tobytes()


def test_a_decoded_binary_request_round_trips_through_encode() -> None:
    body, length = _binary([1, 2], Z)
    decoded = decode(body, length)
    images = _images(2)
    encoded = encode(decoded.request_id, True, MODEL, decoded.seed, images)  # type: ignore[arg-type]
    assert (
        np.frombuffer(encoded[-images.nbytes :], np.uint8).reshape(images.shape).tolist() == images.tolist()
    )
