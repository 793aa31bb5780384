"""What a request brings: its body read within byte and time limits, the file part of a
multipart upload parsed in memory, and the image decoded within a pixel limit (from the header,
before decoding). Nothing in a request touches the file system."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from imgclf.data.images import ImageDecodeError, open_image, resize_center_crop, to_rgb
from imgclf.serve.config import ServeConfig

DEFAULT_MAX_PIXELS = ServeConfig("").max_pixels


async def read_limited(request: Request, max_bytes: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"upload is {int(declared):,} bytes; the limit is {max_bytes:,}")
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise HTTPException(413, f"upload exceeds the limit of {max_bytes:,} bytes")

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise HTTPException(408, f"upload not received within {timeout:g} s") from None
    except ClientDisconnect:
        # the client left: nobody reads the answer, and it is not the server's error to log
        raise HTTPException(400, "client disconnected during the upload") from None
    return bytes(body)


def first_file_part(body: bytes, content_type: str) -> bytes:
    """The first part of a multipart/form-data body that carries a file, parsed in memory."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "multipart upload without a boundary")
    parts: list[dict[str, Any]] = []
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state["part"] = {"data": bytearray(), "headers": b""}

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["part"]["headers"] += data[start:end] + b";"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["part"]["data"] += data[start:end]

    def on_part_end() -> None:
        parts.append(state.pop("part"))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_value": on_header_value,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as e:
        raise HTTPException(400, f"malformed multipart upload: {e}") from None
    for p in parts:
        if b"filename=" in p["headers"] or b'name="file"' in p["headers"]:
            return bytes(p["data"])
    raise HTTPException(400, "multipart upload has no file part (send the image as 'file')")


def decode_upload(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    try:
        img = to_rgb(open_image(data, draft=size, max_pixels=max_pixels))
    except ImageDecodeError as e:
        reason = str(e)
        status = (
            415
            if reason.startswith(("not an image", "zero bytes"))
            else 413
            if reason.startswith(("decompression bomb", "too many pixels"))
            else 422
        )
        raise HTTPException(status, f"cannot use this upload: {reason}") from None
    return np.asarray(resize_center_crop(img, size), dtype=np.uint8)
