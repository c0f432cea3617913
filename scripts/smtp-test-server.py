#!/usr/bin/env python3
"""An SMTP server for tests, on aiosmtpd (pinned in a virtual environment by scripts/test).

Listens on 127.0.0.1 (--port 0: a free port), writes the port it got to --port-file once it
accepts connections, and each message it accepts, byte for byte as received (after the DATA
phase's dot-unstuffing), to --maildir as <n>.eml (written to a temporary name, then renamed).

Modes (--mode): smtp (a real server: --tls none|starttls|implicit with --cert/--key, AUTH
required when SMTP_TEST_AUTH=user:password is in the environment, --reject ADDRESS answered
550), garbage (answers every line with text that is not SMTP), hang (accepts connections and
never says a word). Exits when its parent process goes away, so a crashed test leaves no
server behind."""
import argparse, asyncio, itertools, os, ssl, sys

from aiosmtpd.smtp import SMTP, AuthResult


class Handler:
    def __init__(self, maildir, reject):
        self.maildir = maildir
        self.reject = {address.lower() for address in reject}
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        number = next(self.counter)
        temporary = os.path.join(self.maildir, f".{os.getpid()}-{number}.tmp")
        with open(temporary, "wb") as file:
            file.write(envelope.original_content or envelope.content)
        os.rename(temporary, os.path.join(self.maildir, f"{os.getpid()}-{number}.eml"))
        return "250 OK queued"


def authenticator(expected):
    def check(server, session, envelope, mechanism, auth_data):
        user, password = expected.split(":", 1)
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok)
    return check


async def garbage(reader, writer):
    writer.write(b"HELLO THIS IS NOT SMTP\r\n")
    try:
        while await reader.readline():
            writer.write(b"?? what\r\n")
    finally:
        writer.close()


async def hang(reader, writer):
    while await reader.read(4096):
        pass
    writer.close()


async def watch_parent(parent):
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    os._exit(0)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--mode", choices=["smtp", "garbage", "hang"], default="smtp")
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--reject", action="append", default=[])
    args = parser.parse_args()
    os.makedirs(args.maildir, exist_ok=True)
    loop = asyncio.get_running_loop()

    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    if args.mode == "garbage":
        server = await asyncio.start_server(garbage, "127.0.0.1", args.port)
    elif args.mode == "hang":
        server = await asyncio.start_server(hang, "127.0.0.1", args.port)
    else:
        handler = Handler(args.maildir, args.reject)
        auth = os.environ.get("SMTP_TEST_AUTH")
        options = dict(hostname="smtp.test", decode_data=False, enable_SMTPUTF8=False)
        if auth:
            options.update(authenticator=authenticator(auth), auth_required=True, auth_require_tls=args.tls != "none")
        else:
            options.update(auth_require_tls=False)
        if args.tls == "starttls":
            options.update(tls_context=context, require_starttls=True)

        def factory():
            return SMTP(handler, loop=loop, **options)

        server = await loop.create_server(
            factory, "127.0.0.1", args.port, ssl=context if args.tls == "implicit" else None, reuse_address=True
        )

    port = server.sockets[0].getsockname()[1]
    temporary = args.port_file + ".tmp"
    with open(temporary, "w") as file:
        file.write(str(port))
    os.rename(temporary, args.port_file)
    asyncio.ensure_future(watch_parent(os.getppid()))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
