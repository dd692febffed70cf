"""9101 (文件上传) as HIS code sends it to the file-upload path: multipart/form-data with the envelope in a
`jsonStr` part and the file in another part. The gateway turns it into the interface's JSON form (the file
Base64-encoded in input.fsUploadIn.in), which is what the outbox stores, the msgid identifies and the platform
receives: the same upload always gives the same bytes, so a retry finds its stored answer.

Parsing is the standard library's MIME parser (email, with the HTTP policy): a multipart body is a MIME
message, and that parser is the one Python's own tooling relies on.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
from email.message import EmailMessage

from gateway.errors import RequestError
from gateway.platform.stmtfiles import UPLOAD_INFNO

JSON_PART = "jsonStr"


def is_multipart(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "multipart/form-data"


def _refuse(why: str) -> RequestError:
    return RequestError(f"multipart upload: {why}", kind="bad_multipart")


def multipart_envelope(body: bytes, content_type: str) -> bytes:
    """The JSON envelope (UTF-8) of a multipart 9101 upload; RequestError says what is wrong."""
    json_text, file = _parts(body, content_type)
    try:
        fields = json.loads(json_text)
    except ValueError:
        raise _refuse(f"the {JSON_PART} part is not JSON") from None
    if not isinstance(fields, dict) or fields.get("infno") != UPLOAD_INFNO:
        raise _refuse(f"only {UPLOAD_INFNO} (文件上传) is sent as multipart; send other transactions as JSON")
    if file is not None:
        inner = fields.get("input")
        if not isinstance(inner, dict):
            inner = fields["input"] = {}
        upload = inner.get("fsUploadIn")
        if not isinstance(upload, dict):
            upload = inner["fsUploadIn"] = {}
        upload["in"] = base64.b64encode(file[1]).decode("ascii")
        upload.setdefault("filename", file[0])
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


def _parts(body: bytes, content_type: str) -> tuple[str, tuple[str, bytes] | None]:
    """The jsonStr part's text and the file part (name, bytes), if any."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise _refuse("the body is not multipart/form-data with the boundary its Content-Type names")
    json_text: str | None = None
    file: tuple[str, bytes] | None = None
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_param("name", header="content-disposition") == JSON_PART:
            try:
                json_text = payload.decode(part.get_content_charset() or "utf-8")
            except (LookupError, UnicodeDecodeError):
                raise _refuse(f"the {JSON_PART} part is not valid in its charset") from None
        elif part.get_filename() is not None:
            if file is not None:
                raise _refuse("more than one file part: send one file per 9101")
            file = (str(part.get_filename()), payload)
    if json_text is None:
        raise _refuse(f"no {JSON_PART} part with the envelope")
    return json_text, file
