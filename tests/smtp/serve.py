"""An SMTP server for the tests (aiosmtpd from PyPI), on a free loopback port.

Usage: serve.py DIR. Each message received is written to DIR as `<n>.eml` (the bytes as
received) beside `<n>.rcpt` (the envelope's recipients, one a line). A recipient whose local
part starts with `refuse` is answered 550 (permanent), one that starts with `later` 451
(transient). Prints the port on the first line, and exits when its standard input closes.
"""
import asyncio
import itertools
import os
import sys
import threading

from aiosmtpd.smtp import SMTP

DIR = sys.argv[1]
COUNT = itertools.count()


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("refuse"):
            return "550 5.1.1 no such user here"
        if local.startswith("later"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(COUNT)
        with open(os.path.join(DIR, f"{n}.rcpt"), "w") as f:
            f.write("\n".join(envelope.rcpt_tos))
        # Written last, under its final name, so a reader never sees half a message.
        tmp = os.path.join(DIR, f"{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(DIR, f"{n}.eml"))
        return "250 Message accepted"


def watch_parent():
    sys.stdin.read()
    os._exit(0)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), decode_data=False, enable_SMTPUTF8=True), "127.0.0.1", 0
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    threading.Thread(target=watch_parent, daemon=True).start()
    await server.serve_forever()


asyncio.run(main())
