#!/usr/bin/env bash
# http_core_instructions.sh [N] - user-space instructions per request of the sans-IO HTTP/1.1 core
# alone (gateway/protocols/http/core.py: parse a request, frame a response), counted by valgrind's
# callgrind: the difference between N and 2N requests, so start-up does not count. Run it before
# and after a change to the core; it is immune to the machine's load. Needs valgrind.
set -u
N=${1:-5000}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$HERE/../.venv/bin/python}
OUT=$(mktemp -d)
SCRIPT='
import sys
from gateway.protocols.http.core import HTTPConnection
n = int(sys.argv[1])
request = (b"GET /items/42?page=2 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: bench/1.0\r\n"
           b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nCookie: session=abc123\r\n\r\n")
headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
conn = HTTPConnection()
for _ in range(n):
    conn.receive_data(request)
    (req, end) = conn.events_received()
    conn.start_response(req, 200, headers)
    conn.send_body(b"Hello, world!")
    conn.end_response()
    conn.data_to_send()
'
total() {
  (cd "$HERE/.." && PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$PY" -c "$SCRIPT" "$1" >/dev/null 2>&1)
  awk '/^summary:/ {print $2}' "$OUT/cg.$1"
}
ONE=$(total "$N")
TWO=$(total $((2 * N)))
echo "RESULT http_core n=$N instructions_per_request=$(((TWO - ONE) / N))"
rm -rf "$OUT"
