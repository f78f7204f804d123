"""Sans-IO Kafka wire-protocol codec: primitives, message schemas, framing.

Knows nothing of sockets or storage. Requests and responses are plain dicts keyed by Kafka's
JSON-schema field names in snake_case; see framing.py for the entry points and schema.py /
codec.py for how the per-API tables in apis/ become encoders and decoders.
"""

from .api_keys import ADVERTISED, SUPPORTED_VERSIONS, ApiKey, api_versions_entries
from .apis import APIS, CODEC_VERSIONS
from .framing import (
    MAX_FRAME_BYTES,
    FrameReader,
    Request,
    RequestHeader,
    UnsupportedRequestError,
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_request_parts,
    encode_response,
    encode_response_parts,
    encode_unsupported_api_versions,
    is_flexible,
    message_codec,
    read_frame_length,
    response_expected,
)
from .primitives import EncodeError

__all__ = [
    "ADVERTISED", "SUPPORTED_VERSIONS", "CODEC_VERSIONS", "APIS", "ApiKey", "api_versions_entries",
    "MAX_FRAME_BYTES", "FrameReader", "Request", "RequestHeader", "UnsupportedRequestError",
    "EncodeError", "decode_request", "decode_request_header", "decode_response", "encode_request",
    "encode_request_parts", "encode_response", "encode_response_parts",
    "encode_unsupported_api_versions", "is_flexible", "message_codec", "read_frame_length",
    "response_expected",
]
