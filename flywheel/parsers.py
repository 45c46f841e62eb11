"""The API's JSON parser: Django's body-size limit applies, and orjson reads the body.

A body above ``DATA_UPLOAD_MAX_MEMORY_SIZE`` raises ``RequestDataTooBig`` before it is read,
which :func:`flywheel.errors.exception_handler` answers with 413.
"""

from typing import Any

import orjson
from rest_framework import exceptions, parsers


class BoundedJSONParser(parsers.JSONParser):
    """JSON bodies read through ``HttpRequest.body``, so Django's size limit applies.

    DRF's own parser reads the raw stream, which skips ``DATA_UPLOAD_MAX_MEMORY_SIZE``: any body
    would be read into memory. orjson parses faster than the standard library and refuses NaN.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        request = (parser_context or {})["request"]
        body = request._request.body
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        # JSON can only carry a NUL as the escape \u0000; look closer only when that is present.
        if b"\\u0000" in body and holds_nul(data):
            raise exceptions.ParseError("JSON parse error - strings may not contain NUL (\\u0000) characters.")
        return data


def holds_nul(value: Any) -> bool:
    """Whether any string in a parsed JSON value, keys included, contains a NUL character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
