"""Hypothesis strategies for the SMS provider modules: webhook URLs, form parameters, bodies and
header sets, both well-formed and hostile."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import strategies as st

# Printable text including non-ASCII, emoji and the GSM-7 extension characters.
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
keys = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd")), min_size=1, max_size=12)

params = st.lists(st.tuples(keys, text), max_size=8)

hosts = st.sampled_from(["gw.example.com", "sms.example.org", "127.0.0.1", "[::1]", "example.com"])
ports = st.one_of(st.just(""), st.sampled_from([":443", ":80", ":8443", ":8001"]))
schemes = st.sampled_from(["https", "http"])
paths = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=10),
                 min_size=0, max_size=3).map(lambda segments: "/" + "/".join(segments))


@st.composite
def urls(draw: st.DrawFn) -> str:
    """An absolute webhook URL, with or without a port and a (percent-encoded) query.

    ``bodySHA256`` is Twilio's reserved query parameter (it marks a hash-signed JSON body), so
    generated URLs do not carry it.
    """
    query = draw(st.lists(st.tuples(keys.filter(lambda k: k != "bodySHA256"), text), max_size=3))
    url = f"{draw(schemes)}://{draw(hosts)}{draw(ports)}{draw(paths)}"
    if query:
        url += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    return url


# Anything a peer can put in a header value (Latin-1 on the wire).
header_values = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=255, blacklist_characters="\r\n"), max_size=120),
    st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)


def headers_with(names: list[str]) -> st.SearchStrategy[list[tuple[str, str | bytes]]]:
    """Random header lists that may or may not contain each of ``names``, with junk values."""
    content_types = st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", "", "application/json; charset=utf-8"]
    )
    entries = st.one_of(
        st.tuples(st.sampled_from(names), header_values),
        st.tuples(st.just("content-type"), content_types),
        st.tuples(keys, header_values),
    )
    return st.lists(entries, max_size=6)


# Bodies: random bytes, broken form encodings, JSON of odd shapes.
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(text, children, max_size=4)),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(keys, text), max_size=6).map(
        lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()),
    st.sampled_from([b"%", b"a=%zz", b"a=%ff", b"&&", b"=", b"a", b"[" * 5000, b'{"data":', b"null",
                     b'{"data":{"event_type":"message.received","payload":{"id":1}}}',
                     b'{"type":"message","id":"x","from":{},"to":[]}']),
    json_values.map(lambda value: json.dumps(value).encode()),
)


def _documents(skeleton: st.SearchStrategy[dict]) -> st.SearchStrategy[bytes]:
    return skeleton.map(lambda document: json.dumps(document).encode())


_values = st.one_of(json_values, st.just("+447400123456"), st.just("447400123456"),
                    st.just([{"phone_number": "+18445550001", "status": "delivered"}]))

#: JSON documents shaped like Telnyx events, with any values in the fields that matter.
telnyx_documents = _documents(st.fixed_dictionaries({"data": st.fixed_dictionaries(
    {"event_type": st.sampled_from(["message.received", "message.sent", "message.finalized", "other"])},
    optional={"payload": st.dictionaries(
        st.sampled_from(["id", "from", "to", "text", "media", "encoding", "parts", "errors",
                         "messaging_profile_id"]), _values, max_size=9)})}))

#: JSON documents shaped like the generic format.
generic_documents = _documents(st.dictionaries(
    st.sampled_from(["type", "id", "from", "to", "text", "media", "encoding", "segments", "status",
                     "error_code", "error_message", "account"]),
    st.one_of(_values, st.sampled_from(["message", "status", "GSM-7", "delivered"])), max_size=12))

#: JSON documents shaped like Vonage SMS API and Messages API webhooks.
vonage_documents = _documents(st.dictionaries(
    st.sampled_from(["message_uuid", "messageId", "msisdn", "to", "from", "text", "type", "status", "error",
                     "channel", "sms", "concat", "concat-ref", "concat-total", "concat-part", "err-code"]),
    st.one_of(_values, st.sampled_from(["true", "sms", "text", "unicode", "binary", "1", "2"])), max_size=14))
