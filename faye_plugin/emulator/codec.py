"""Exact and fast conversions between the engine's JSON dicts and the v2 protos.

protobuf's `json_format` is pure Python: a Service with 2,000 tags (2,000 `traffic` targets and as
many `trafficStatuses`) takes it tens of milliseconds each way, and a write used to convert several
times. A service's size is in those two lists, whose items are flat and mostly unchanged between
calls, so each item is converted once and remembered (by its content); the rest of the message, small,
still goes through `json_format` on every call. Results are what `json_format` gives for the whole
message: the per-item conversion is the same code, and anything that is not a plain list of flat dicts
(or fails to parse) takes the whole-message path, which raises the same errors as before.

On top of that, a whole list seen before (the same list object: a stored service's `traffic`, or an
answer's; or the same content, as a client sends back the traffic it read) is not walked again, so
reading a service that did not change costs next to nothing. This relies on the engine never editing
these lists in place (it replaces them), and on answers and stored resources being read-only: treat
what these functions return as read-only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Hashable
from typing import Any

from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

SERVICE_MSG = run_v2.Service.pb()
REVISION_MSG = run_v2.Revision.pb()
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"
PACKED = {SERVICE_TYPE: SERVICE_MSG, REVISION_TYPE: REVISION_MSG}
#: The Service's long lists: JSON name -> proto field name.
ITEM_LISTS = {"traffic": "traffic", "trafficStatuses": "traffic_statuses"}
MEMO_LIMIT = 100_000  # items remembered (all forgotten at once past it: a bound, not a policy)
LISTS_KEPT = 32  # whole lists remembered by identity (each keeps its list alive), newest kept

_dicts: dict[Hashable, dict[str, Any]] = {}  # (list, item's content) -> the item as json_format gives it
_bytes: dict[Hashable, bytes] = {}  # (list, item's content) -> a Service holding only it, serialised
_from_proto: dict[Hashable, dict[str, Any]] = {}  # (list, item's serialised proto) -> the item's dict


_text_lists: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (list, its JSON) -> the normal items
_proto_lists: dict[tuple[str, bytes], list[dict[str, Any]]] = {}  # (list, its serialised form) -> dicts
_lists: dict[tuple[str, int], tuple[list[Any], Any]] = {}
_evicting = threading.Lock()  # (what, id(list)) -> (list, result)


def _seen(what: str, items: list[Any]) -> Any:
    """What was worked out for this very list object before (None if nothing)."""
    got = _lists.get((what, id(items)))
    return got[1] if got is not None and got[0] is items else None


def _keep(what: str, items: list[Any], result: Any) -> Any:
    _put_newest(_lists, (what, id(items)), (items, result))
    return result


def _put_newest(memo: dict[Any, Any], key: Any, value: Any) -> None:
    """Remember `value`, forgetting the oldest entry past LISTS_KEPT (gRPC and REST threads share it)."""
    with _evicting:
        if len(memo) >= LISTS_KEPT:
            del memo[next(iter(memo))]
        memo[key] = value


class _NotFlatError(Exception):
    """The input is not a plain list of flat items: use the whole-message conversion."""


def _remember(memo: dict[Hashable, Any], key: Hashable, value: Any) -> Any:
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def _content(items: Any) -> list[tuple[Any, ...]]:
    """The items' contents as hashable keys; _NotFlatError when they are not a list of flat dicts."""
    if not isinstance(items, list):
        raise _NotFlatError
    keys = []
    for item in items:
        if not isinstance(item, dict):
            raise _NotFlatError
        key = tuple(sorted((k, v, type(v)) for k, v in item.items()))  # 1, 1.0 and True differ
        try:
            hash(key)
        except TypeError:
            raise _NotFlatError from None
        keys.append(key)
    return keys


def _text(items: Any) -> str | None:
    """A list's content as canonical JSON (one C-coded call; True, 1 and 1.0 stay apart), else None."""
    try:
        return json.dumps(items, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


def _whole(body: dict[str, Any], message_cls: type[Message]) -> dict[str, Any]:
    message = message_cls()
    json_format.ParseDict(body, message, ignore_unknown_fields=False)
    return json_format.MessageToDict(message)


def _in_field_order(parts: dict[str, Any]) -> dict[str, Any]:
    """`parts` in the Service's field order, as MessageToDict would have them."""
    return {f.json_name: parts[f.json_name] for f in SERVICE_MSG.DESCRIPTOR.fields if f.json_name in parts}


def normalise(body: dict[str, Any], message_cls: type[Message]) -> dict[str, Any]:
    """`body` parsed strictly as `message_cls` and turned back into JSON (camelCase, enum names,
    defaults left out): ``MessageToDict(ParseDict(body))``, raising json_format.ParseError as it does."""
    if message_cls is not SERVICE_MSG or not any(k in body for k in ITEM_LISTS):
        return _whole(body, message_cls)
    try:
        lists = {}
        for field in ITEM_LISTS:
            if field not in body:
                continue
            given = body[field]
            what = "dicts " + field
            items = _seen(what, given) if isinstance(given, list) else None
            text = _text(given) if items is None else None
            if text is not None:
                items = _text_lists.get((field, text))
            if items is None:
                items = []
                for key, item in zip(_content(given), given, strict=True):
                    got = _dicts.get((field, key))
                    if got is None:
                        try:
                            one = _whole({field: [item]}, SERVICE_MSG)
                        except json_format.ParseError:
                            raise _NotFlatError from None  # the whole message gives the error its full path
                        got = _remember(_dicts, (field, key), one[field][0] if one else {})
                    items.append(got)
                if text is not None:
                    _put_newest(_text_lists, (field, text), items)
                _keep(what, _keep(what, given, items), items)  # the answer's list is normal too
            if items:
                lists[field] = items
    except _NotFlatError:
        return _whole(body, message_cls)
    rest = _whole({k: v for k, v in body.items() if k not in ITEM_LISTS}, SERVICE_MSG)
    return _in_field_order({**rest, **lists})


def service_bytes(service: dict[str, Any]) -> bytes:
    """A normalised Service (JSON form) serialised as the proto.

    The long lists are appended as serialised fragments: proto parsers merge concatenated messages,
    appending repeated fields, so this parses to the same message as serialising it whole.
    """
    lists = {f: service[f] for f in ITEM_LISTS if f in service}
    parts: list[bytes] = []
    try:
        for field, given in lists.items():
            fragment = _seen("bytes " + field, given) if isinstance(given, list) else None
            if fragment is None:
                fragment = _keep("bytes " + field, given, _fragments(field, given))
            parts.append(fragment)
    except _NotFlatError:
        message = SERVICE_MSG()
        json_format.ParseDict(service, message, ignore_unknown_fields=False)
        return message.SerializeToString()
    rest = SERVICE_MSG()
    json_format.ParseDict(
        {k: v for k, v in service.items() if k not in ITEM_LISTS}, rest, ignore_unknown_fields=False
    )
    parts.insert(0, rest.SerializeToString())
    return b"".join(parts)


def _fragments(field: str, items: Any) -> bytes:
    """Serialised Service fragments holding `items` as its `field` (_NotFlatError: not flat)."""
    parts = []
    for key, item in zip(_content(items), items, strict=True):
        got = _bytes.get((field, key))
        if got is None:
            one = SERVICE_MSG()
            json_format.ParseDict({field: [item]}, one, ignore_unknown_fields=False)
            got = _remember(_bytes, (field, key), one.SerializeToString())
        parts.append(got)
    return b"".join(parts)


def dumps(value: Any) -> str:
    """Compact JSON of `value` (as json.dumps), the long lists of services (by identity) cached."""
    if isinstance(value, dict) and len(value) <= 64:
        fields = []
        for key, item in value.items():
            if key in ITEM_LISTS and isinstance(item, list):
                text = _seen("json", item)
                if text is None:
                    text = _keep("json", item, json.dumps(item, separators=(",", ":")))
            else:
                text = dumps(item)
            fields.append(f"{json.dumps(key)}:{text}")
        return "{" + ",".join(fields) + "}"
    return json.dumps(value, separators=(",", ":"))


def from_proto(message: Message) -> dict[str, Any]:
    """A message as the JSON dict REST clients send: ``MessageToDict(message)``.

    A Service's long lists are looked up by their serialised form: a client that sends the traffic it
    read gets the list made for it last time (which `normalise` then knows as normal).
    """
    if message.DESCRIPTOR is not SERVICE_MSG.DESCRIPTOR:
        return json_format.MessageToDict(message)
    rest = SERVICE_MSG()
    rest.CopyFrom(message)
    lists = {}
    for field, proto_field in ITEM_LISTS.items():
        given = getattr(message, proto_field)
        if not given:
            continue
        only = SERVICE_MSG()
        getattr(only, proto_field).extend(given)
        key = (field, only.SerializeToString(deterministic=True))
        items = _proto_lists.get(key)
        if items is None:
            items = []
            for item in given:
                one = (field, item.SerializeToString(deterministic=True))
                got = _from_proto.get(one)
                if got is None:
                    got = _remember(_from_proto, one, json_format.MessageToDict(item))
                items.append(got)
            _put_newest(_proto_lists, key, _keep("dicts " + field, items, items))
        rest.ClearField(proto_field)
        lists[field] = items
    return _in_field_order({**json_format.MessageToDict(rest), **lists})


def encode(answer: dict[str, Any], message_cls: type[Message]) -> bytes:
    """An engine answer (JSON form) serialised as `message_cls` (a gRPC answer)."""
    if message_cls is SERVICE_MSG:
        return service_bytes(answer)
    if message_cls is operations_pb2.Operation:
        op: Any = operations_pb2.Operation(name=answer["name"], done=answer.get("done", False))
        if "error" in answer:
            json_format.ParseDict(answer["error"], op.error)
        packed: dict[int, bytes] = {}
        for field in ("metadata", "response"):
            resource = answer.get(field)
            if resource is None:
                continue
            if id(resource) not in packed:  # metadata and response are often the same object
                body = {k: v for k, v in resource.items() if k != "@type"}
                cls = PACKED[resource["@type"]]
                packed[id(resource)] = service_bytes(body) if cls is SERVICE_MSG else _encode_whole(body, cls)
            target = getattr(op, field)
            target.type_url = resource["@type"]
            target.value = packed[id(resource)]
        return op.SerializeToString()
    if message_cls is run_v2.ListServicesResponse.pb():
        listing = run_v2.ListServicesResponse.pb()(next_page_token=answer.get("nextPageToken", ""))
        for service in answer.get("services", []):
            listing.services.add().MergeFromString(service_bytes(service))
        return listing.SerializeToString()
    return _encode_whole(answer, message_cls)


def _encode_whole(answer: dict[str, Any], message_cls: type[Message]) -> bytes:
    message = message_cls()
    json_format.ParseDict(answer, message, ignore_unknown_fields=False)
    return message.SerializeToString()
