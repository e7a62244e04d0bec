"""A Python guest as componentize-py writes one: wasi:http 0.2, a handler
class exported under the world's name, built with
`componentize-py -d wit -w replica:server/replica componentize app`."""

import os

from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        if path == "/hello":
            status, body = 200, b"Hello from a Python guest"
        elif path == "/home":
            server_id = os.environ.get("SERVER_ID", "")
            status = 200
            body = ('{"message":"Hello from Server: %s","status":"successful"}' % server_id).encode()
        else:
            status, body = 404, b"no such route"
        headers = Fields.from_list([("content-length", str(len(body)).encode())])
        response = OutgoingResponse(headers)
        response.set_status_code(status)
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = outgoing.write()
        stream.blocking_write_and_flush(body)
        stream.__exit__(None, None, None)
        OutgoingBody.finish(outgoing, None)
