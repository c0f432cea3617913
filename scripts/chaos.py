#!/usr/bin/env python3
"""The Python side of scripts/chaos (read Docs/reliability.md first).

    chaos.py proxy LISTEN_PORT TARGET_PORT
        A TCP proxy on 127.0.0.1 between one HTTP node and RabbitMQ. SIGUSR1 cuts every
        connection and closes the listening socket (connections are refused), SIGUSR2 listens
        again, SIGTERM stops it.
    chaos.py load WORKDIR NODE_URL...
        Mixed load from CHAOS_CLIENTS client threads until WORKDIR/stop exists, with a ledger of
        what each client was told, re-tries of every revoked token against every node, and a
        final check over HTTP; writes WORKDIR/ledger.json and WORKDIR/requests.jsonl. With
        CHAOS_MAIL_DIR (the workers' MAIL_DIR) and CHAOS_MAIL_BASE (their PUBLIC_BASE_URL) the
        clients also verify addresses, ask for resends and reset passwords with the tokens the
        mail files carry (contract §11), and every used token is replayed at the end.
    chaos.py drain WORKDIR
        Waits, with a deadline, until identity_mail_outbox holds no pending mail, reading
        MAIL_DIR meanwhile; writes WORKDIR/drain.json.
    chaos.py report WORKDIR
        Compares the ledger with PostgreSQL (psql), with the events consumed from
        identity.events (pika) and with the mail files, prints the report, writes
        WORKDIR/results.txt; exit status 1 when something acknowledged was lost, something was
        applied twice, a revoked token was accepted more than CHAOS_WINDOW seconds after its
        revocation, a process crashed (WORKDIR/timeline.txt), or a promise of contract §11 was
        broken (mail lost, left pending or given up, a file without its outbox row, a token
        that worked twice or was refused while usable, an account told verified that is not).
    chaos.py events-queue
        Declares the quorum queue chaos.events bound to identity.events ('#') (pika).

Standard library only, except for the pika parts (events-queue, report), which run from the
virtual environment that scripts/test and scripts/chaos create.
"""

import base64
import collections
import email
import email.policy
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

WINDOW = float(os.environ.get("CHAOS_WINDOW", "1.0"))  # contract §5: every instance within 1 s
EVENTS_QUEUE = "chaos.events"
MAIL_DIR = os.environ.get("CHAOS_MAIL_DIR", "")  # the workers' MAIL_DIR (FileMailer)
MAIL_BASE = os.environ.get("CHAOS_MAIL_BASE", "")  # their PUBLIC_BASE_URL: the links' base
MAIL_WAIT = float(os.environ.get("CHAOS_MAIL_WAIT", "10"))  # how long a client waits for a mail it expects
INVALID_TOKEN = "urn:identity:problem:invalid-token"


# --------------------------------------------------------------------------------------------
# proxy


def proxy(listen_port, target_port):
    sel = selectors.DefaultSelector()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    pending = collections.deque()
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: pending.append(s))
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    peers = {}  # socket -> the socket at the other end
    listener = None

    def log(message):
        print(f"{time.time():.3f} proxy {message}", file=sys.stderr, flush=True)

    def listen():
        nonlocal listener
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", listen_port))
        listener.listen(64)
        sel.register(listener, selectors.EVENT_READ, "accept")

    def close_pair(sock):
        other = peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            peers.pop(s, None)
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            except OSError:
                pass
            s.close()

    listen()
    log(f"listening on {listen_port}, forwarding to {target_port}")
    while True:
        for key, _ in sel.select():
            if key.data == "wake":
                os.read(wake_r, 512)
                while pending:
                    s = pending.popleft()
                    if s == signal.SIGUSR1 and listener is not None:
                        sel.unregister(listener)
                        listener.close()
                        listener = None
                        cut = len(peers) // 2
                        for sock in list(peers):
                            if sock in peers:
                                close_pair(sock)
                        log(f"cut {cut} connections, refusing")
                    elif s == signal.SIGUSR2 and listener is None:
                        listen()
                        log("allowing again")
                    elif s in (signal.SIGTERM, signal.SIGINT):
                        log("stopping")
                        return
            elif key.data == "accept":
                if listener is None:
                    continue
                client, _ = listener.accept()
                try:
                    upstream = socket.create_connection(("127.0.0.1", target_port), timeout=2)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
                for s in (client, upstream):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                peers[client], peers[upstream] = upstream, client
                sel.register(client, selectors.EVENT_READ, "pump")
                sel.register(upstream, selectors.EVENT_READ, "pump")
            else:
                sock = key.fileobj
                if sock not in peers:
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        peers[sock].sendall(data)
                        continue
                except OSError:
                    pass
                close_pair(sock)


# --------------------------------------------------------------------------------------------
# load


class Recorder:
    """Every request made, for the status histograms (requests.jsonl)."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "w", encoding="utf-8")

    def add(self, **entry):
        with self.lock:
            self.file.write(json.dumps(entry) + "\n")

    def close(self):
        with self.lock:
            self.file.close()


class Nodes:
    def __init__(self, urls, recorder):
        self.urls = urls
        self.recorder = recorder

    def request(self, node, method, path, route, body=None, token=None, timeout=15.0, client="load"):
        """(status or 'error:...', decoded JSON or None, wall start, monotonic start, monotonic end)."""
        host, port = self.urls[node]
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        wall = time.time()
        start = time.monotonic()
        status, data = None, None
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
            if raw:
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
        except socket.timeout:
            status = "error:timeout"
        except (ConnectionError, OSError, http.client.HTTPException) as error:
            status = "error:" + type(error).__name__
        finally:
            conn.close()
        end = time.monotonic()
        self.recorder.add(t=round(wall, 4), ms=round((end - start) * 1000, 1), node=node, route=route,
                          status=status, client=client)
        return status, data, wall, start, end


def indeterminate(status):
    return not isinstance(status, int) or status >= 500


def token_claim(token, claim):
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))[claim]
    except (IndexError, KeyError, ValueError):
        return None


def token_jti(token):
    return token_claim(token, "jti")


def token_digest(token):
    """The digest identity_account_tokens keeps of a mail token (CryptoAdapter's AccountTokens):
    SHA-256 over a label and the token's 32 bytes, as hex. Only digests go into the ledger."""
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except ValueError:
        return None
    if len(token) != 43 or len(raw) != 32:
        return None
    return hashlib.sha256(b"identity account token digest v1" + raw).hexdigest()


MAIL_NAME = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.eml$")
MAIL_KINDS = {"verify-email": "email_verification", "reset-password": "password_reset"}


def parse_mail(data, base):
    """What the run needs of one .eml file: recipient, kind, token (from the link, which must be
    BASE + /verify-email?token=… or /reset-password?token=…, and the same as the bare token
    line), Message-ID's local part; "problem" names what is wrong with it, if anything."""
    info = {"recipient": None, "kind": None, "token": None, "message_id": None, "problem": None}
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
        to = message["To"]
        if to is not None and to.addresses:
            info["recipient"] = to.addresses[0].addr_spec.lower()
        info["message_id"] = (message["Message-ID"] or "").strip().strip("<>").split("@")[0] or None
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
    except Exception as error:  # an unreadable mail is a finding, not a crash of the run
        info["problem"] = f"unreadable: {error!r}"
        return info
    links = re.findall(re.escape(base) + r"/(verify-email|reset-password)\?token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])", text)
    bare = re.findall(r"^\s*([A-Za-z0-9_-]{43})\s*$", text, re.MULTILINE)
    if links:
        path, token = links[0]
        info["kind"], info["token"] = MAIL_KINDS[path], token
        if len({t for _, t in links}) != 1 or token not in bare:
            info["problem"] = "the link's token and the token line differ"
    elif "/verify-email?token=" in text or "/reset-password?token=" in text:
        info["problem"] = f"a link that does not start with {base}"
    elif "was changed" in text:
        info["kind"] = "email_changed"
    else:
        info["problem"] = "no link found"
    if info["recipient"] is None:
        info["problem"] = info["problem"] or "no To address"
    return info


class MailDir:
    """The workers' MAIL_DIR as this run reads it. FileMailer writes each mail to a temporary
    name and renames it to <date>-<mail id>.eml; a mail sent again (a retry after a lost record
    or an expired claim) replaces its file, so a new inode under a known name means the mail
    was written twice. scan() reads the directory (names and inodes only: no stat per file) and
    parses each new or replaced file; waiters are woken after every scan."""

    def __init__(self, path, base, state=None):
        self.path = path
        self.base = base
        self.cond = threading.Condition()
        self.files = state or {}  # name -> {"inodes", "recipient", "kind", "message_id", "problem", "digest", "date", "mtime"}
        self.tokens = {}  # name -> token, in memory only
        self.by_recipient = collections.defaultdict(list)
        for name, info in self.files.items():
            self.by_recipient[info.get("recipient")].append(name)

    def scan(self):
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            entries = []
        changed = False
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(".eml"):
                continue
            known = self.files.get(name)
            if known is not None and entry.inode() in known["inodes"]:
                continue
            try:
                with open(entry.path, "rb") as f:
                    data = f.read()
                    stat = os.fstat(f.fileno())
            except FileNotFoundError:  # gone between the listing and the open: next scan
                continue
            inode, mtime = stat.st_ino, stat.st_mtime
            if known is not None and inode in known["inodes"]:
                continue
            info = parse_mail(data, self.base)
            match = MAIL_NAME.match(name)
            info["date"] = match.group(1) if match else None
            if match is None:
                info["problem"] = info["problem"] or "a file name that is not <date>-<mail id>.eml"
            elif info["message_id"] != match.group(2):
                info["problem"] = info["problem"] or f"Message-ID {info['message_id']} is not the file's mail id"
            token = info.pop("token")
            info["digest"] = token_digest(token) if token else None
            info["mtime"] = mtime
            with self.cond:
                if known is None:
                    info["inodes"] = [inode]
                    self.files[name] = info
                    self.by_recipient[info["recipient"]].append(name)
                else:
                    known["inodes"].append(inode)
                    known["mtime"] = mtime
                    if info["digest"] != known["digest"]:
                        known["problem"] = known["problem"] or "written again with another token"
                if token:
                    self.tokens[name] = token
            changed = True
        with self.cond:
            self.cond.notify_all()
        return changed

    def scanner(self, stop, every=0.1):
        while not stop.is_set():
            self.scan()
            stop.wait(every)

    def newest(self, recipient, kind, exclude):
        """The newest mail (by its commit date, the name's prefix) of `kind` to `recipient` whose
        name is not in `exclude`, as (name, token), or None."""
        with self.cond:
            names = [n for n in self.by_recipient.get(recipient, ()) if n not in exclude
                     and self.files[n]["kind"] == kind and n in self.tokens]
            if not names:
                return None
            name = max(names)
            return name, self.tokens[name]

    def wait(self, recipient, kind, exclude, seconds):
        """Polls (woken by every scan) for a mail as newest() finds one, until `seconds` passed."""
        deadline = time.monotonic() + seconds
        with self.cond:
            while True:
                found = self.newest(recipient, kind, exclude)
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self.cond.wait(min(left, 0.5))


GRACE = 10.0  # contract §9: the token just replaced gets the current pair again within 10 s


class User:
    def __init__(self, email, password, name):
        self.email = email
        self.name = name
        self.id = None
        self.registration = None  # "acked", "indeterminate", "rejected:<status>"
        self.passwords = [password]  # every password this account may have, newest first
        self.tokens = []  # tokens believed valid
        self.refresh = None  # the refresh token of the newest session, while it is believed open
        self.refresh_unanswered_at = None  # monotonic time of the first unanswered refresh with it
        self.renames = []  # [name, "acked" | "indeterminate" | "rejected:<status>"] in order
        self.password_changes = []  # [password, outcome, "change" | "reset" | "replay" | "void"] in order
        self.initial_name = name
        self.initial_password = password
        self.final_password = None
        # Contract §11.
        self.verified = None  # "acked" once a verification (200) or a reset (204) was acknowledged
        self.seen_mail = set()  # mail files of this account the client has looked at
        self.token_uses = []  # dicts: purpose, token (memory only), digest, outcome, status, ...
        self.resends = []  # outcomes of POST /auth/verify-email/resend
        self.reset_requests = []  # POST /auth/password-reset: {"outcome", "wall", "node"}
        self.held_reset = None  # an unused reset token kept: {"token", "mail", "void": None | reason}
        self.not_anymore = []  # [password, reason]: passwords that must not log in at the end


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.users = []
        self.revocations = []  # dicts, filled in by the probe threads
        self.logouts = {"acked": 0, "indeterminate": 0, "rejected": 0}
        self.anomalies = collections.Counter()
        self.anomaly_examples = collections.defaultdict(list)
        self.stale_reads = 0
        # Contract §11: broken promises (each fails the run) and figures.
        self.violations = collections.Counter()
        self.violation_examples = collections.defaultdict(list)
        self.mail = collections.Counter()  # waits, found, timed out, ...
        self.mail_waits = []  # seconds from the request's answer to its mail's file, when it came

    def anomaly(self, kind, example):
        with self.lock:
            self.anomalies[kind] += 1
            if len(self.anomaly_examples[kind]) < 5:
                self.anomaly_examples[kind].append(example)

    def violation(self, kind, example):
        with self.lock:
            self.violations[kind] += 1
            if len(self.violation_examples[kind]) < 5:
                self.violation_examples[kind].append(example)

    def count(self, what, n=1):
        with self.lock:
            self.mail[what] += n


class Load:
    def __init__(self, workdir, urls):
        self.workdir = workdir
        self.recorder = Recorder(os.path.join(workdir, "requests.jsonl"))
        self.nodes = Nodes(urls, self.recorder)
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.probes = []
        self.revoked_pool = []  # revocations older than the window, for random re-tries
        self.pool_lock = threading.Lock()
        self.run = secrets.token_hex(4)
        self.clients = int(os.environ.get("CHAOS_CLIENTS", "4"))
        self.think = float(os.environ.get("CHAOS_THINK_SECONDS", "0.05"))
        self.users_per_client = int(os.environ.get("CHAOS_USERS_PER_CLIENT", "15"))
        self.maildir = MailDir(MAIL_DIR, MAIL_BASE) if MAIL_DIR else None

    # -- revocations --------------------------------------------------------------------------

    def revoked(self, token, user, node, kind, revoked_at, wall):
        """A revocation answered with success at monotonic time revoked_at (the response's end;
        wall is the wall-clock time of the same instant)."""
        record = {"jti": token_jti(token), "user": user.email, "node": node, "kind": kind, "wall": round(wall, 4),
                  "accepted_late": [], "accepted_in_window": [], "convergence": None, "statuses": collections.Counter()}
        with self.ledger.lock:
            self.ledger.revocations.append(record)
        thread = threading.Thread(target=self.probe, args=(token, record, node, revoked_at), daemon=True)
        thread.start()
        self.probes.append(thread)

    def try_revoked(self, token, record, node, revoked_at, route="GET /users/me (revoked token)"):
        status, _, wall, start, end = self.nodes.request(node, "GET", "/users/me", route, token=token,
                                                          timeout=10.0, client="probe")
        record["statuses"][str(status)] += 1
        if status == 200:
            age = start - revoked_at
            entry = {"node": node, "age_s": round(age, 4), "wall": round(wall, 4)}
            if age > WINDOW:
                record["accepted_late"].append(entry)
            else:
                record["accepted_in_window"].append(entry)
        return status, end

    def probe(self, token, record, origin, revoked_at):
        """Re-tries the token on every node: the other one until its first 401 (convergence),
        then both again after the window; then the token joins the pool of random re-tries."""
        others = [n for n in range(len(self.nodes.urls)) if n != origin]
        self.try_revoked(token, record, origin, revoked_at)
        for other in others:
            deadline = revoked_at + 60
            while time.monotonic() < deadline:
                status, end = self.try_revoked(token, record, other, revoked_at)
                if status == 401:
                    convergence = end - revoked_at
                    if record["convergence"] is None or convergence > record["convergence"]:
                        record["convergence"] = round(convergence, 4)
                    break
                time.sleep(0.02 if time.monotonic() - revoked_at < 1.5 else 0.2)
        pause = revoked_at + WINDOW + 0.1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        for node in range(len(self.nodes.urls)):
            self.try_revoked(token, record, node, revoked_at)
        with self.pool_lock:
            self.revoked_pool.append((token, record, revoked_at))

    def pool_prober(self):
        """Every 0.2 s, one old revoked token against a random node, faults or not."""
        while not self.stop.is_set():
            with self.pool_lock:
                choice = random.choice(self.revoked_pool) if self.revoked_pool else None
            if choice:
                token, record, revoked_at = choice
                self.try_revoked(token, record, random.randrange(len(self.nodes.urls)), revoked_at)
            self.stop.wait(0.2)

    # -- clients ------------------------------------------------------------------------------

    def node(self):
        return random.randrange(len(self.nodes.urls))

    def register(self, client, users, number):
        user = User(f"chaos-{self.run}-{client}-{number}@example.com", "pw-" + secrets.token_hex(8), f"user {client}-{number}")
        status, data, *_ = self.nodes.request(self.node(), "POST", "/users", "POST /users",
                                              {"email": user.email, "password": user.passwords[0], "name": user.name},
                                              client=client)
        if status == 201:
            user.registration = "acked"
            user.id = data["id"]
        elif indeterminate(status):
            user.registration = "indeterminate"
        else:
            user.registration = f"rejected:{status}"
            self.ledger.anomaly("registration refused", {"email": user.email, "status": status})
        with self.ledger.lock:
            self.ledger.users.append(user)
        users.append(user)
        # Contract §11: a committed registration has its verification mail. Wait for it, and
        # use it at once most of the time (the others stay unverified for resends and later).
        if self.maildir and not user.registration.startswith("rejected"):
            found = self.await_mail(user, "email_verification",
                                    "registration" if user.registration == "acked" else "unanswered registration")
            if found and random.random() < 0.7:
                self.verify(client, user, found)

    def login(self, client, user):
        # The newest possible password first; a 401 tries the next (an unconfirmed change).
        for index, password in enumerate(list(user.passwords)):
            status, data, *_ = self.nodes.request(self.node(), "POST", "/auth/login", "POST /auth/login",
                                                  {"email": user.email, "password": password}, client=client)
            if status == 200:
                user.tokens.append(data["access_token"])
                user.tokens = user.tokens[-3:]
                user.refresh, user.refresh_unanswered_at = data.get("refresh_token"), None
                if user.passwords[0] != password or len(user.passwords) > 1:
                    user.passwords = [password]
                if user.registration == "indeterminate":
                    user.registration = "indeterminate-exists"
                return
            if status != 401:
                return
        if user.registration == "acked":
            self.ledger.anomaly("login refused for every possible password", {"email": user.email})

    def me(self, client, user):
        token = random.choice(user.tokens)
        status, data, *_ = self.nodes.request(self.node(), "GET", "/users/me", "GET /users/me", token=token, client=client)
        if status == 200:
            expected = [r[0] for r in user.renames if r[1] == "acked"]
            pending = any(r[1] == "indeterminate" for r in user.renames)
            if expected and not pending and data.get("name") != expected[-1]:
                with self.ledger.lock:
                    self.ledger.stale_reads += 1
        elif status == 401:
            user.tokens.remove(token)
            self.ledger.anomaly("valid token refused (401)", {"email": user.email, "route": "GET /users/me"})

    def rename(self, client, user):
        token = random.choice(user.tokens)
        name = f"name {secrets.token_hex(6)}"
        status, *_ = self.nodes.request(self.node(), "PUT", "/users/me", "PUT /users/me (name)", {"name": name},
                                        token=token, client=client)
        if status == 200:
            user.renames.append([name, "acked"])
        elif indeterminate(status):
            user.renames.append([name, "indeterminate"])
        else:
            user.renames.append([name, f"rejected:{status}"])
            if status == 401:
                user.tokens.remove(token)
                self.ledger.anomaly("valid token refused (401)", {"email": user.email, "route": "PUT /users/me"})

    def change_password(self, client, user):
        token = random.choice(user.tokens)
        current, new = user.passwords[0], "pw-" + secrets.token_hex(8)
        node = self.node()
        status, _, wall, start, end = self.nodes.request(node, "PUT", "/users/me", "PUT /users/me (password)",
                                                         {"password": new, "current_password": current},
                                                         token=token, client=client)
        if status == 200:
            user.password_changes.append([new, "acked", "change"])
            user.passwords = [new]
            if user.held_reset and not user.held_reset["void"]:
                user.held_reset["void"] = "a password change"  # contract §11: it voids open reset tokens
            user.refresh = None  # a password change ends every session
            revoked, user.tokens = user.tokens, []
            for old in revoked:
                self.revoked(old, user, node, "password", end, wall + end - start)
        elif indeterminate(status):
            # Maybe applied: the tokens may or may not be revoked, so they are not used again.
            user.password_changes.append([new, "indeterminate", "change"])
            user.passwords = [new] + user.passwords
            user.tokens = []
            user.refresh = None
        else:
            user.password_changes.append([new, f"rejected:{status}", "change"])
            if status == 403 and len(user.passwords) > 1:
                user.passwords = user.passwords[1:]
            elif status == 401:
                user.tokens.remove(token)
                self.ledger.anomaly("valid token refused (401)", {"email": user.email, "route": "PUT /users/me"})

    # -- contract §11: mail ----------------------------------------------------------------------

    def await_mail(self, user, kind, why):
        """Waits up to CHAOS_MAIL_WAIT for a mail of `kind` to the account that the client has not
        seen yet; returns (name, token) of the newest, marked seen, or None."""
        start = time.monotonic()
        found = self.maildir.wait(user.email, kind, user.seen_mail, MAIL_WAIT)
        self.ledger.count(f"{why} mail awaited")
        if found is None:
            self.ledger.count(f"{why} mail not there within {MAIL_WAIT:g} s")
            return None
        with self.ledger.lock:
            self.ledger.mail_waits.append(round(time.monotonic() - start, 3))
        self.take_mail(user, kind, found[0])
        return found

    def take_mail(self, user, kind, name):
        """Marks `name` and every older mail of `kind` to the account as seen: a newer one voids them."""
        with self.maildir.cond:
            for other in self.maildir.by_recipient.get(user.email, ()):
                if other <= name and self.maildir.files[other]["kind"] == kind:
                    user.seen_mail.add(other)

    def use_token(self, client, user, purpose, name, token, password=None, route_note="", void=None):
        """POST /auth/verify-email or /auth/password-reset/confirm with `token`; returns the status
        and the answer's problem type. Recorded in user.token_uses (the token itself only in memory)."""
        if purpose == "verify":
            path, body, route = "/auth/verify-email", {"token": token}, "POST /auth/verify-email"
        else:
            path, body, route = "/auth/password-reset/confirm", {"token": token, "password": password}, "POST /auth/password-reset/confirm"
        node = self.node()
        status, data, wall, start, end = self.nodes.request(node, "POST", path, route + route_note, body, client=client)
        problem = data.get("type") if isinstance(data, dict) else None
        outcome = ("acked" if status in (200, 204) else "indeterminate" if indeterminate(status) else f"rejected:{status}")
        use = {"purpose": purpose, "token": token, "digest": token_digest(token), "mail": name, "outcome": outcome,
               "status": status, "problem": problem, "wall": round(wall, 4), "node": node, "void": void,
               "replay": None, "replay_problem": None}
        user.token_uses.append(use)
        return use, data, wall, start, end

    def verify(self, client, user, found):
        name, token = found
        use, data, *_ = self.use_token(client, user, "verify", name, token)
        if use["outcome"] == "acked":
            user.verified = "acked"
            if not (isinstance(data, dict) and data.get("email_verified") is True):
                self.ledger.violation("verification answered 200 without email_verified: true",
                                      {"email": user.email, "body": data})
        elif use["status"] == 400 and use["problem"] != INVALID_TOKEN:
            self.ledger.violation("a refused token not answered invalid-token", {"email": user.email, "problem": use["problem"]})

    def verify_or_resend(self, client, user):
        """An account not known verified: use its newest unused verification mail, or ask for a
        new one (POST /auth/verify-email/resend, bearer, 202) and wait for it."""
        if user.verified == "acked":
            return self.me(client, user)
        found = self.maildir.newest(user.email, "email_verification", user.seen_mail)
        if found and random.random() < 0.8:
            self.take_mail(user, "email_verification", found[0])
            return self.verify(client, user, found)
        if len(user.resends) >= 5:  # registration's mail and four resends: the fifth sends nothing
            return self.me(client, user)
        token = random.choice(user.tokens)
        status, *_ = self.nodes.request(self.node(), "POST", "/auth/verify-email/resend", "POST /auth/verify-email/resend",
                                        token=token, client=client)
        user.resends.append("acked" if status == 202 else "indeterminate" if indeterminate(status) else f"rejected:{status}")
        if status == 401:
            user.tokens.remove(token)
            self.ledger.anomaly("valid token refused (401)", {"email": user.email, "route": "POST /auth/verify-email/resend"})
        if status == 202 and len(user.resends) <= 4:
            found = self.await_mail(user, "email_verification", "resend")
            if found and random.random() < 0.8:
                self.verify(client, user, found)

    def reset(self, client, user):
        """POST /auth/password-reset (202, the mail committed later by a worker), then the reset
        mail, then POST /auth/password-reset/confirm with a new password. At most 3 reset mails an
        hour per address (contract §11): the fourth request is sent but expects no mail."""
        if len(user.reset_requests) >= 4:
            return self.me(client, user) if user.tokens else self.login(client, user)
        node = self.node()
        status, _, wall, *_ = self.nodes.request(node, "POST", "/auth/password-reset", "POST /auth/password-reset",
                                                 {"email": user.email}, client=client)
        user.reset_requests.append({"outcome": "acked" if status == 202 else "indeterminate" if indeterminate(status)
                                    else f"rejected:{status}", "wall": round(wall, 4), "node": node})
        if status != 202 and not indeterminate(status):
            self.ledger.anomaly("reset request refused", {"email": user.email, "status": status})
        if len(user.reset_requests) > 3:
            return
        found = self.await_mail(user, "password_reset", "reset")
        if found is None:
            return
        name, token = found
        held = user.held_reset
        if held and held["mail"] < name and not held["void"]:
            held["void"] = "a newer reset mail"  # contract §11: a newer reset token voids older ones
        if held and held["void"] and random.random() < 0.5:
            # A voided token must be refused, and change nothing.
            self.confirm(client, user, held["mail"], held["token"], void=held["void"])
            user.held_reset = None
        if random.random() < 0.85:
            self.confirm(client, user, name, token)
        else:
            user.held_reset = {"token": token, "mail": name, "void": None}

    def confirm(self, client, user, name, token, void=None):
        new = "pw-" + secrets.token_hex(8)
        before = list(user.passwords)
        use, data, wall, start, end = self.use_token(client, user, "reset", name, token, password=new,
                                                     route_note=" (voided token)" if void else "", void=void)
        kind = "void" if void else "reset"
        if use["outcome"] == "acked":
            if void:
                self.ledger.violation("a voided reset token worked", {"email": user.email, "voided by": void})
            user.password_changes.append([new, "acked", kind])
            user.passwords = [new]
            user.verified = "acked"  # Docs/mail.md: the address counts as verified
            if user.held_reset and user.held_reset["token"] != token and not user.held_reset["void"]:
                user.held_reset["void"] = "a reset"
            # Every session and token of the account is revoked (contract §5, §9, §11).
            user.not_anymore += [[p, "the password before an acknowledged reset"] for p in before]
            revoked, user.tokens = user.tokens, []
            refresh, user.refresh = user.refresh, None
            for old in revoked:
                self.revoked(old, user, use["node"], "reset", end, wall + end - start)
            if refresh:
                thread = threading.Thread(target=self.probe_refresh, args=(refresh, user, end), daemon=True)
                thread.start()
                self.probes.append(thread)
        elif use["outcome"] == "indeterminate":
            user.password_changes.append([new, "indeterminate", kind])
            user.passwords = [new] + user.passwords
            user.tokens = []
            user.refresh = None
        else:
            user.password_changes.append([new, use["outcome"], kind])
            if use["status"] == 400 and use["problem"] != INVALID_TOKEN:
                self.ledger.violation("a refused token not answered invalid-token", {"email": user.email, "problem": use["problem"]})

    def probe_refresh(self, refresh, user, ended_at):
        """The refresh token of a session a reset ended: refused on every node after the window."""
        pause = ended_at + WINDOW + 0.1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        for node in range(len(self.nodes.urls)):
            deadline = time.monotonic() + 60
            while True:  # an outage's 503 says nothing: asked again until a real answer
                status, *_ = self.nodes.request(node, "POST", "/auth/refresh", "POST /auth/refresh (after a reset)",
                                                {"refresh_token": refresh}, client="probe")
                if not indeterminate(status) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.ledger.count(f"refresh after a reset answered {status}")
            if status == 200:
                self.ledger.violation("a refresh token worked after a reset ended its session", {"email": user.email, "node": node})

    def logout(self, client, user):
        token = random.choice(user.tokens)
        node = self.node()
        status, _, wall, start, end = self.nodes.request(node, "POST", "/auth/logout", "POST /auth/logout",
                                                         token=token, client=client)
        self.forget_session(user, token_claim(token, "sid"))
        if status == 204:
            self.ledger.logouts["acked"] += 1
            self.revoked(token, user, node, "logout", end, wall + end - start)
        elif indeterminate(status):
            self.ledger.logouts["indeterminate"] += 1
        else:
            self.ledger.logouts["rejected"] += 1
            if status == 401:
                self.ledger.anomaly("valid token refused (401)", {"email": user.email, "route": "POST /auth/logout"})

    def forget_session(self, user, sid):
        """The session `sid` ended (or may have): its access tokens and refresh token go."""
        user.tokens = [t for t in user.tokens if token_claim(t, "sid") != sid]
        if sid and user.refresh and self.refresh_sid(user) == sid:
            user.refresh = None

    @staticmethod
    def refresh_sid(user):
        # The refresh token names its session: 22 base64url characters of its 16 bytes.
        try:
            raw = base64.urlsafe_b64decode(user.refresh[:22] + "==")
            return str(uuid.UUID(bytes=raw))
        except (TypeError, ValueError):
            return None

    def refresh(self, client, user):
        """Renews the newest session with its latest refresh token (contract §9). A refresh is
        refused as a reuse only after a replay: here, only after an unanswered refresh with the
        same token more than the grace interval ago; anything else is an anomaly."""
        if not user.refresh:
            return self.me(client, user)
        presented = user.refresh
        status, data, _, start, _ = self.nodes.request(self.node(), "POST", "/auth/refresh", "POST /auth/refresh",
                                                       {"refresh_token": presented}, client=client)
        if status == 200:
            user.refresh, user.refresh_unanswered_at = data["refresh_token"], None
            user.tokens.append(data["access_token"])
            user.tokens = user.tokens[-3:]
        elif indeterminate(status):
            # Perhaps rotated: the same token is presented again, within the grace or not.
            if user.refresh_unanswered_at is None:
                user.refresh_unanswered_at = start
        elif status == 401 and isinstance(data, dict) and data.get("type", "").endswith("refresh-token-reused"):
            sid = self.refresh_sid(user)
            late = user.refresh_unanswered_at is not None and start - user.refresh_unanswered_at > GRACE
            if not late:
                self.ledger.anomaly("refresh token refused as reused without a replay",
                                    {"email": user.email, "unanswered_at": user.refresh_unanswered_at, "at": start})
            self.forget_session(user, sid)
            user.refresh = None
        else:
            if status == 401:
                self.ledger.anomaly("valid refresh token refused", {"email": user.email, "status": status})
            user.refresh = None

    def client(self, client):
        users = []
        number = 0
        rng = random.Random()
        while not self.stop.is_set():
            try:
                if len(users) < self.users_per_client or rng.random() < 0.03:
                    number += 1
                    self.register(client, users, number)
                else:
                    user = rng.choice([u for u in users if not u.registration.startswith("rejected")] or users)
                    if not user.tokens:
                        self.login(client, user)
                    else:
                        actions = [self.me, self.rename, self.login, self.logout, self.change_password, self.refresh]
                        weights = [35, 25, 12, 14, 8, 20]
                        if self.maildir:
                            actions += [self.verify_or_resend, self.reset]
                            weights += [6, 5]
                        action = rng.choices(actions, weights=weights)[0]
                        action(client, user)
            except Exception as error:  # a bug in this script must not pass for a clean run
                self.ledger.anomaly("load generator error", repr(error))
            self.stop.wait(self.think)

    # -- the end ------------------------------------------------------------------------------

    def wait_ready(self, seconds=120):
        deadline = time.monotonic() + seconds
        for node in range(len(self.nodes.urls)):
            while time.monotonic() < deadline:
                status, *_ = self.nodes.request(node, "GET", "/health/ready", "GET /health/ready", client="final")
                if status == 200:
                    break
                time.sleep(0.5)

    def final_checks(self):
        self.wait_ready()
        time.sleep(WINDOW + 1)
        # Every revoked token, once more on every node.
        with self.pool_lock:
            pool = list(self.revoked_pool)
        for token, record, revoked_at in pool:
            for node in range(len(self.nodes.urls)):
                self.try_revoked(token, record, node, revoked_at, route="GET /users/me (revoked token, final)")
        if self.maildir:
            self.replay_tokens()
        # Which password each account has now (the ledger says which it may have).
        for user in self.ledger.users:
            if user.registration.startswith("rejected"):
                continue
            candidates = [user.initial_password] + [p for p, *_ in user.password_changes]
            for password in reversed(candidates):
                status, *_ = self.nodes.request(0, "POST", "/auth/login", "POST /auth/login (final)",
                                                {"email": user.email, "password": password}, client="final")
                if status == 200:
                    user.final_password = password
                    break
        # Passwords an acknowledged reset replaced, and those of refused replays: none logs in.
        for user in self.ledger.users:
            for password, reason in user.not_anymore:
                status, *_ = self.nodes.request(self.node(), "POST", "/auth/login", "POST /auth/login (old password, final)",
                                                {"email": user.email, "password": password}, client="final")
                self.ledger.count(f"old password logins answered {status}")
                if status == 200:
                    self.ledger.violation("a password that no longer holds logged in", {"email": user.email, "which": reason})

    def replay_tokens(self):
        """Contract §11: a token works once. Every token whose use was acknowledged is presented
        again (a reset with a new password): it must be refused with 400 invalid-token, and
        change nothing (the report checks the account's version; the password is tried above)."""
        for user in self.ledger.users:
            for use in list(user.token_uses):
                if use["outcome"] != "acked":
                    continue
                password = "pw-" + secrets.token_hex(8)
                for _ in range(3):  # everything is up again: an unanswered replay is asked again
                    if use["purpose"] == "verify":
                        status, data, *_ = self.nodes.request(self.node(), "POST", "/auth/verify-email",
                                                              "POST /auth/verify-email (replay, final)",
                                                              {"token": use["token"]}, client="final")
                    else:
                        status, data, *_ = self.nodes.request(self.node(), "POST", "/auth/password-reset/confirm",
                                                              "POST /auth/password-reset/confirm (replay, final)",
                                                              {"token": use["token"], "password": password}, client="final")
                    if not indeterminate(status):
                        break
                use["replay"] = status
                use["replay_problem"] = data.get("type") if isinstance(data, dict) else None
                self.ledger.count(f"{use['purpose']} replays answered {status}")
                if status in (200, 204):
                    self.ledger.violation("a used token worked again", {"email": user.email, "purpose": use["purpose"]})
                    if use["purpose"] == "reset":
                        user.password_changes.append([password, "acked", "replay"])
                elif status != 400 or use["replay_problem"] != INVALID_TOKEN:
                    self.ledger.violation("a used token's replay not answered 400 invalid-token",
                                          {"email": user.email, "status": status, "problem": use["replay_problem"]})
                if use["purpose"] == "reset" and status not in (200, 204):
                    user.not_anymore.append([password, "the password of a refused replay"])

    def run_until_stopped(self):
        stop_file = os.path.join(self.workdir, "stop")
        threads = [threading.Thread(target=self.client, args=(f"c{i}",), daemon=True) for i in range(self.clients)]
        threads.append(threading.Thread(target=self.pool_prober, daemon=True))
        for thread in threads:
            thread.start()
        scanning = threading.Event()
        if self.maildir:
            scanner = threading.Thread(target=self.maildir.scanner, args=(scanning,), daemon=True)
            scanner.start()
        while not os.path.exists(stop_file):
            time.sleep(0.2)
        self.stop.set()
        for thread in threads:
            thread.join()
        print(f"{time.time():.3f} load stopped; waiting for the revocation probes", file=sys.stderr, flush=True)
        for thread in list(self.probes):
            thread.join()
        self.final_checks()
        scanning.set()
        if self.maildir:
            scanner.join()
        self.recorder.close()
        with open(os.path.join(self.workdir, "ledger.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)

    def to_json(self):
        ledger = self.ledger
        users = []
        for u in ledger.users:
            users.append({"email": u.email, "id": u.id, "registration": u.registration, "initial_name": u.initial_name,
                          "renames": u.renames,
                          "password_changes": [[secrets.compare_digest(p, u.final_password or ""), o, kind]
                                               for p, o, kind in u.password_changes],
                          "initial_password_is_final": u.final_password == u.initial_password,
                          "final_password_known": u.final_password is not None,
                          "verified": u.verified, "resends": u.resends, "reset_requests": u.reset_requests,
                          "token_uses": [{k: v for k, v in use.items() if k != "token"} for use in u.token_uses]})
        revocations = []
        for r in ledger.revocations:
            r = dict(r)
            r["statuses"] = dict(r["statuses"])
            revocations.append(r)
        return {"users": users, "revocations": revocations, "logouts": ledger.logouts,
                "anomalies": dict(ledger.anomalies), "anomaly_examples": ledger.anomaly_examples,
                "stale_reads": ledger.stale_reads, "nodes": [f"{h}:{p}" for h, p in self.nodes.urls],
                "violations": dict(ledger.violations), "violation_examples": ledger.violation_examples,
                "mail": dict(ledger.mail), "mail_waits": ledger.mail_waits,
                "mail_files": self.maildir.files if self.maildir else None}


def load(workdir, urls):
    parsed = []
    for url in urls:
        host, port = url.removeprefix("http://").split(":")
        parsed.append((host, int(port)))
    Load(workdir, parsed).run_until_stopped()


# --------------------------------------------------------------------------------------------
# events (pika)


def amqp_parameters():
    import pika
    return pika.ConnectionParameters(host="127.0.0.1", port=int(os.environ["CHAOS_RABBITMQ_PORT"]),
                                      credentials=pika.PlainCredentials("guest", "guest"))


def events_queue():
    import pika
    connection = pika.BlockingConnection(amqp_parameters())
    channel = connection.channel()
    channel.exchange_declare("identity.events", exchange_type="topic", durable=True)
    channel.queue_declare(EVENTS_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(EVENTS_QUEUE, "identity.events", routing_key="#")
    connection.close()


def drain_events():
    import pika
    connection = pika.BlockingConnection(amqp_parameters())
    channel = connection.channel()
    events = []
    while True:
        method, _, body = channel.basic_get(EVENTS_QUEUE, auto_ack=True)
        if method is None:
            break
        events.append(json.loads(body))
    connection.close()
    return events


# --------------------------------------------------------------------------------------------
# report


def psql(sql):
    command = ["psql", "-X", "-q", "-At", "-F", "\t", "-h", "127.0.0.1", "-p", os.environ["CHAOS_PG_PORT"],
               "-U", "postgres", "-d", "identity", "-c", sql]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in output.splitlines() if line]


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def drain(workdir):
    """After the load: polls (every 0.1 s, up to CHAOS_MAIL_DRAIN_SECONDS) until no mail is
    pending in identity_mail_outbox, reading MAIL_DIR meanwhile (a file replaced while it waits
    is a mail sent again); writes WORKDIR/drain.json for the report. A claim held by a killed
    worker ends only with its lease (MAIL_CLAIM_SECONDS)."""
    with open(os.path.join(workdir, "ledger.json"), encoding="utf-8") as f:
        ledger = json.load(f)
    maildir = MailDir(MAIL_DIR, MAIL_BASE, state=ledger.get("mail_files"))
    limit = float(os.environ.get("CHAOS_MAIL_DRAIN_SECONDS", "80"))
    start = time.monotonic()
    pending = None
    while True:
        maildir.scan()
        try:
            pending = int(psql("SELECT count(*) FROM identity_mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL")[0][0])
        except subprocess.CalledProcessError:
            pending = None
        if pending == 0 or time.monotonic() - start > limit:
            break
        time.sleep(0.1)
    maildir.scan()  # a mail is marked sent after its file is in place
    waited = time.monotonic() - start
    print(f"mail outbox: {pending} pending after {waited:.1f} s", flush=True)
    with open(os.path.join(workdir, "drain.json"), "w", encoding="utf-8") as f:
        json.dump({"seconds": round(waited, 1), "limit": limit, "pending": pending, "mail_files": maildir.files}, f)


DROPPED = "its token no longer works"  # the start of last_error for a mail dropped (Docs/mail.md)


def mail_report(ledger, by_email, drained):
    """Contract §11, checked against identity_mail_outbox, identity_account_tokens,
    identity_users and the mail files. Returns the figures and the violations; a violation
    is a broken promise and fails the run, a figure is reported (mail_text writes them)."""
    figures = collections.Counter()
    violations = collections.defaultdict(list)
    files = (drained or {}).get("mail_files") or ledger.get("mail_files") or {}
    if drained is None:
        violations["the mail outbox was not drained (no drain.json)"].append("")
    elif drained["pending"] != 0:
        violations["mail still pending after the drain"].append(f"{drained['pending']} after {drained['seconds']} s")
    outbox = psql("SELECT id, kind, recipient, user_id, sent_at IS NOT NULL, failed_at IS NOT NULL, coalesce(last_error, ''), "
                  "attempts, extract(epoch FROM created_at), extract(epoch FROM sent_at) FROM identity_mail_outbox")
    live = {d: (p, e == "t") for d, p, e in psql(
        "SELECT encode(digest, 'hex'), purpose, expires_at > now() FROM identity_account_tokens")}
    files_by_id = collections.defaultdict(list)
    for name, info in files.items():
        match = MAIL_NAME.match(name)
        files_by_id[match.group(2) if match else name].append(name)
    rows = {}
    per_recipient = collections.defaultdict(collections.Counter)
    per_user = collections.defaultdict(collections.Counter)
    latency = []
    reset_rows = collections.defaultdict(list)
    for mail_id, kind, recipient, user_id, sent, failed, error, attempts, created, sent_at in outbox:
        rows[mail_id] = (kind, recipient)
        if kind == "password_reset":
            reset_rows[recipient].append(float(created))
        figures[f"committed {kind}"] += 1
        per_recipient[recipient][kind] += 1
        per_user[user_id][kind] += 1
        names = files_by_id.get(mail_id, [])
        if sent == "t":
            state = "sent"
        elif failed == "t":
            state = "dropped" if error.startswith(DROPPED) else "given up"
        else:
            state = "pending"
        figures[state] += 1
        if int(attempts) > 0:
            figures["mails with failed attempts"] += 1
        if state == "given up":
            violations["mail given up on"].append(f"{mail_id} {kind}: {error[:120]}")
        if len(names) > 1:
            violations["two files for one mail"].append(f"{mail_id}: {names}")
        if state == "sent" and not names:
            violations["mail recorded as sent without a file"].append(f"{mail_id} {kind}")
        if state == "dropped" and names:
            # Written, then its worker killed (or the database gone for longer than the claim)
            # before the record; claimed again after the lease when its token had been used:
            # the file is there, the row says dropped.
            figures["dropped after its file was written"] += 1
        for name in names:
            info = files[name]
            if info["recipient"] != recipient or info["kind"] != kind:
                violations["a mail file differs from its outbox row"].append(
                    f"{name}: {info['recipient']} {info['kind']} vs {recipient} {kind}")
            if len(info["inodes"]) > 1:
                figures["files written more than once (the mail sent again)"] += 1
                figures["extra writes"] += len(info["inodes"]) - 1
            if created:
                latency.append(info["mtime"] - float(created))
    for mail_id, names in files_by_id.items():
        if mail_id not in rows:
            violations["a mail file without an outbox row"].append(", ".join(names))
    for name, info in files.items():
        if info.get("problem"):
            violations["a malformed mail file"].append(f"{name}: {info['problem']}")
    figures["files"] = len(files)
    # Contract §11 limits: 3 reset mails per address per hour; Docs/mail.md: a resend adds
    # verification mail up to 5 per address per hour (the registration's counted). The run is
    # shorter than an hour, so every row counts.
    most_resets = max((c["password_reset"] for c in per_recipient.values()), default=0)
    most_verifications = max((c["email_verification"] for c in per_recipient.values()), default=0)
    for recipient, counts in per_recipient.items():
        if counts["password_reset"] > 3:
            violations["more than 3 reset mails to one address in an hour"].append(f"{recipient}: {counts['password_reset']}")
        if counts["email_verification"] > 5:
            violations["more than 5 verification mails to one address in an hour"].append(
                f"{recipient}: {counts['email_verification']}")
    # Every account has its registration's verification mail (committed with it).
    for email, found in by_email.items():
        if per_user[found[0]["id"]]["email_verification"] < 1:
            violations["an account without its verification mail"].append(email)
    figures["resend mails"] = sum(max(0, c["email_verification"] - 1) for c in per_user.values())
    figures["reset mails"] = sum(c["password_reset"] for c in per_user.values())

    # Reset requests (answered 202 once the broker holds the command, before a worker decides,
    # Docs/mail.md "The same time"): each mail committed belongs to the last request sent before
    # it; a request with none is over the limit when three were committed before it, else lost
    # (a 202 without its mail breaks a promise; reported with its time and node).
    lost_requests = []
    for u in ledger["users"]:
        requests = sorted(u["reset_requests"], key=lambda r: r["wall"])
        created = sorted(reset_rows.get(u["email"], []))
        owner = collections.Counter()
        for at in created:
            before = [i for i, r in enumerate(requests) if r["wall"] <= at + 0.5]
            if before:
                owner[before[-1]] += 1
        for i, r in enumerate(requests):
            if owner[i]:
                figures["reset requests that got their mail"] += 1
            elif sum(1 for at in created if at < r["wall"]) >= 3:
                figures["reset requests over the limit (no mail, as promised)"] += 1
            else:
                answer = "202" if r["outcome"] == "acked" else r["outcome"].replace("rejected:", "")
                figures[f"reset requests answered {answer} that got no mail"] += 1
                if r["outcome"] == "acked":
                    lost_requests.append(r)
                    violations["a reset request answered 202 got no mail"].append(f"{u['email']} at {r['wall']:.3f} on node {r['node']}")

    # Tokens: what the clients were told, against what identity_account_tokens holds now.
    uses = collections.Counter()
    for u in ledger["users"]:
        row = (by_email.get(u["email"]) or [None])[0]
        told_verified = any(use["outcome"] == "acked" and use["purpose"] == "verify" for use in u["token_uses"])
        told_reset = any(use["outcome"] == "acked" and use["purpose"] == "reset" for use in u["token_uses"])
        if told_verified or told_reset:
            figures["accounts told verified (200) or reset (204)"] += 1
            if row is None or not row["email_verified"]:
                violations["an account told verified is not email_verified"].append(
                    f"{u['email']} ({'verify-email 200' if told_verified else 'reset 204'})")
        for use in u["token_uses"]:
            purpose, outcome = use["purpose"], use["outcome"]
            key = "voided reset" if use.get("void") else purpose
            uses[f"{key} {outcome}"] += 1
            stored = live.get(use["digest"])
            still_usable = stored is not None and stored[1]
            if outcome.startswith("rejected") and still_usable:
                violations["a token refused while it was still usable"].append(
                    f"{u['email']} {purpose} answered {use['status']} at {use['wall']}")
            if outcome == "acked" and stored is not None:
                violations["a used token is still stored"].append(f"{u['email']} {purpose}")
            if outcome == "indeterminate":
                uses[f"{purpose} unanswered, then {'still usable (not applied)' if still_usable else 'gone (applied or voided)'}"] += 1
            if use.get("replay") is not None:
                uses[f"{purpose} replays answered {use['replay']}"] += 1
        figures["accounts verified in PostgreSQL"] += 1 if row and row["email_verified"] else 0
    for kind, examples in ledger.get("violation_examples", {}).items():
        violations[kind] += [json.dumps(e) for e in examples]
        violations[kind] += [""] * (ledger["violations"][kind] - len(examples))

    return {"figures": figures, "violations": violations, "latency": latency, "uses": uses, "lost_requests": lost_requests,
            "most_resets": most_resets, "most_verifications": most_verifications}


def mail_text(mail, ledger, drained, phase_of):
    """The mail part of the report, as lines."""
    figures, violations, latency, uses = mail["figures"], mail["violations"], mail["latency"], mail["uses"]
    lines = []
    w = lines.append

    def fmt(seconds):
        return f"{seconds:.1f} s"
    committed = sum(v for k, v in figures.items() if k.startswith("committed "))
    w(f"mail (contract §11): {committed} committed in identity_mail_outbox "
      f"({figures['committed email_verification']} verification, of which {figures['resend mails']} by a resend; "
      f"{figures['committed password_reset']} reset; {figures['committed email_changed']} change notices), "
      f"drained in {fmt(drained['seconds']) if drained else '?'}")
    w(f"  sent {figures['sent']} (one file each), dropped {figures['dropped']} (their token no longer worked), "
      f"given up {figures['given up']}, pending {figures['pending']}; {figures['mails with failed attempts']} "
      f"with failed attempts")
    w(f"  files in MAIL_DIR {figures['files']}: sent again (a file replaced under its name, the same Message-ID) "
      f"{figures['files written more than once (the mail sent again)']} ({figures['extra writes']} extra writes); "
      f"dropped after their file was written {figures['dropped after its file was written']}")
    if latency:
        w(f"  commit to file: median {fmt(percentile(latency, 50))}, p99 {fmt(percentile(latency, 99))}, "
          f"longest {fmt(max(latency))}; over 10 s: {sum(1 for x in latency if x > 10)}")
    waits = ledger.get("mail_waits") or []
    m = ledger.get("mail") or {}
    w(f"  clients waiting for a mail (up to {MAIL_WAIT:g} s): "
      + ", ".join(f"{k} {v}" for k, v in sorted(m.items()) if "mail" in k)
      + (f"; found after median {fmt(percentile(waits, 50))}, longest {fmt(max(waits))}" if waits else ""))
    w(f"  most mails to one address: reset {mail['most_resets']} (limit 3), verification {mail['most_verifications']} (limit 5); "
      f"resends answered {dict(collections.Counter(o for u in ledger['users'] for o in u['resends']))}")
    w(f"  reset requests: " + ", ".join(f"{k[len('reset requests '):]} {v}" for k, v in sorted(figures.items())
                                       if k.startswith("reset requests ")))
    if mail["lost_requests"]:
        by_phase = collections.Counter(f"{phase_of(r['wall'])}, node {r['node']}" for r in mail["lost_requests"])
        w(f"    answered 202 but no mail committed (the command never reached a worker): {dict(by_phase)}")
    w(f"  token uses: {dict(sorted(uses.items()))}")
    w(f"  accounts told verified (200) or reset (204): {figures['accounts told verified (200) or reset (204)']}, "
      f"accounts email_verified in PostgreSQL: {figures['accounts verified in PostgreSQL']}")
    other = {k: v for k, v in sorted(m.items()) if "mail" not in k}
    if other:
        w(f"  after resets and replays: {other}")
    if figures.get("token uses that changed no account (a verified address)") is not None:
        w(f"  verification tokens used on an address already verified: "
          f"{figures['token uses that changed no account (a verified address)']}")
    w(f"  broken promises: {sum(len(v) for v in violations.values())}")
    for kind, examples in violations.items():
        w(f"    {kind}: {len(examples)}" + (f", e.g. {[e for e in examples if e][:3]}" if any(examples) else ""))
    return lines


def report(workdir):
    with open(os.path.join(workdir, "ledger.json"), encoding="utf-8") as f:
        ledger = json.load(f)
    requests = []
    with open(os.path.join(workdir, "requests.jsonl"), encoding="utf-8") as f:
        for line in f:
            requests.append(json.loads(line))
    timeline = []
    timeline_path = os.path.join(workdir, "timeline.txt")
    if os.path.exists(timeline_path):
        with open(timeline_path, encoding="utf-8") as f:
            for line in f:
                stamp, _, what = line.strip().partition(" ")
                timeline.append((float(stamp), what))

    # The outbox drains within a few relay rounds once everything is up.
    for _ in range(300):
        if psql("SELECT count(*) FROM identity_outbox")[0][0] == "0":
            break
        time.sleep(0.1)
    outbox_left = int(psql("SELECT count(*) FROM identity_outbox")[0][0])
    rows = psql("SELECT id, email, name, version, email_verified FROM identity_users")
    by_email = collections.defaultdict(list)
    for user_id, email, name, version, verified in rows:
        by_email[email].append({"id": user_id, "name": name, "version": int(version), "email_verified": verified == "t"})
    drained = None
    if os.path.exists(os.path.join(workdir, "drain.json")):
        with open(os.path.join(workdir, "drain.json"), encoding="utf-8") as f:
            drained = json.load(f)
    processed = int(psql("SELECT count(*) FROM identity_processed_messages")[0][0])
    duplicate_emails = psql("SELECT email, count(*) FROM identity_users GROUP BY email HAVING count(*) > 1")
    duplicate_processed = psql("SELECT message_id, count(*) FROM identity_processed_messages GROUP BY message_id HAVING count(*) > 1")
    try:
        events = drain_events()
        events_error = None
    except Exception as error:  # reported, and counted as a failure below
        events, events_error = [], repr(error)

    # Events, distinct by event id (a redelivered copy is allowed, contract §6).
    by_id = {}
    for event in events:
        by_id.setdefault(event.get("event_id"), event)
    per_user = collections.defaultdict(collections.Counter)
    reset_instants = collections.defaultdict(set)
    verified_instants = collections.defaultdict(list)
    for event in by_id.values():
        user_id = event.get("data", {}).get("user_id")
        per_user[user_id][event.get("type")] += 1
        if event.get("type") == "user.password_reset":
            reset_instants[user_id].add(event.get("occurred_at"))
        elif event.get("type") == "user.email_verified":
            verified_instants[user_id].append(event.get("occurred_at"))

    def verification_bumps(user_id, verified_in_db):
        """How many version steps verify-email made (0 or 1): a reset that verifies the address
        moves the version once for both, and publishes user.email_verified at the same instant
        as its user.password_reset. Without the events: 0 to 1 for a verified account."""
        if events_error:
            return (0, 1) if verified_in_db else (0, 0)
        own = sum(1 for at in verified_instants.get(user_id, ()) if at not in reset_instants.get(user_id, ()))
        return (own, own)

    mail = mail_report(ledger, by_email, drained) if MAIL_DIR else None
    lost, twice, notes = [], [], []
    acked = collections.Counter()
    applied = collections.Counter()
    indeterminate_applied = collections.Counter()
    indeterminate_total = collections.Counter()
    known = set()
    for u in ledger["users"]:
        known.add(u["email"])
        found = by_email.get(u["email"], [])
        reg = u["registration"]
        if reg == "acked":
            acked["register"] += 1
            if len(found) == 1 and found[0]["id"] == u["id"]:
                applied["register"] += 1
            elif not found:
                lost.append(f"registration of {u['email']} (201, id {u['id']}): no account")
            else:
                lost.append(f"registration of {u['email']} (201, id {u['id']}): found {found}")
        elif reg.startswith("indeterminate"):
            indeterminate_total["register"] += 1
            if found:
                indeterminate_applied["register"] += 1
        elif found:
            notes.append(f"registration of {u['email']} was refused ({reg}) but the account exists")
        if len(found) > 1:
            twice.append(f"{u['email']}: {len(found)} accounts")
        if not found:
            continue
        row = found[0]

        # Names: the last acknowledged rename, or a later one whose outcome is unknown.
        names = [[u["initial_name"], "acked"]] + u["renames"]
        last_acked = max(i for i, (_, outcome) in enumerate(names) if outcome == "acked")
        allowed = {names[last_acked][0]} | {n for n, o in names[last_acked + 1:] if o == "indeterminate"}
        acked["rename"] += sum(1 for _, o in u["renames"] if o == "acked")
        applied["rename"] += sum(1 for _, o in u["renames"] if o == "acked")
        if row["name"] not in allowed:
            earlier = [i for i, (n, _) in enumerate(names) if n == row["name"]]
            lost.append(f"rename of {u['email']} to {names[last_acked][0]!r} (200): the account's name is "
                        f"{row['name']!r} (change #{earlier[0] if earlier else '?'} of {len(names) - 1})")
            applied["rename"] -= 1
        # Passwords, changed (PUT /users/me) or reset (contract §11): the last acknowledged one,
        # or a later one whose answer is unknown, is what logs in now.
        changes = [[u["initial_password_is_final"], "acked", "registration"]] + u["password_changes"]
        last_acked = max(i for i, (_, outcome, _) in enumerate(changes) if outcome == "acked")
        ok = changes[last_acked][0] or any(is_final for is_final, o, _ in changes[last_acked + 1:] if o == "indeterminate")
        for _, o, kind in u["password_changes"]:
            if o == "acked":
                acked["password" if kind == "change" else "reset"] += 1
                applied["password" if kind == "change" else "reset"] += 1
        if not ok:
            where = [i for i, (is_final, _, _) in enumerate(changes) if is_final]
            kind = changes[last_acked][2]
            lost.append(f"password {kind} #{last_acked} of {u['email']} ({'204' if kind == 'reset' else '200'}): "
                        f"the password that logs in is {'#' + str(where[0]) if where else 'none of those sent'}")
            if last_acked > 0:
                applied["password" if kind == "change" else "reset"] -= 1
        # Versions: 1 at registration, +1 per applied change (every change sent changes something),
        # +1 for a verification of an unverified address (a reset that verifies it moves it once).
        acked_changes = sum(1 for _, o, *_ in u["renames"] + u["password_changes"] if o == "acked")
        unknown_changes = sum(1 for _, o, *_ in u["renames"] + u["password_changes"] if o == "indeterminate")
        indeterminate_total["update"] += unknown_changes
        bump_low, bump_high = verification_bumps(row["id"], row["email_verified"])
        if row["version"] - 1 - bump_low > acked_changes + unknown_changes:
            twice.append(f"{u['email']}: version {row['version']} = {row['version'] - 1 - bump_low} changes applied "
                         f"(+{bump_low} verification), but only {acked_changes} acknowledged + {unknown_changes} "
                         f"unanswered were sent")
        elif row["version"] - 1 - bump_high < acked_changes:
            lost.append(f"{u['email']}: {acked_changes} changes acknowledged, version {row['version']} "
                        f"says {row['version'] - 1 - bump_high} applied (+{bump_high} verification)")
        else:
            indeterminate_applied["update"] += row["version"] - 1 - bump_high - acked_changes
    unknown_rows = [e for e in by_email if e not in known]
    commands_applied = sum(1 for e in by_email) + sum(r[0]["version"] - 1 for r in by_email.values())
    if mail:
        # Mail-only commands record their message too: resends and reset requests that owed a
        # mail, and a verification token used on an address already verified (the rest).
        commands_applied += mail["figures"]["resend mails"] + mail["figures"]["reset mails"]
        token_only = processed - commands_applied
        if token_only < 0:
            notes.append(f"identity_processed_messages has {processed} rows for {commands_applied} applied commands "
                         f"(accounts + changes + mail-only commands)")
        else:
            mail["figures"]["token uses that changed no account (a verified address)"] = token_only
    elif processed != commands_applied:
        notes.append(f"identity_processed_messages has {processed} rows for {commands_applied} applied commands "
                     f"(accounts + changes)")
    for email, count in duplicate_emails:
        twice.append(f"{email}: {count} rows")
    for message_id, count in duplicate_processed:
        twice.append(f"message {message_id}: {count} rows in identity_processed_messages")

    # Events: every committed change published (at least once; distinct event ids counted).
    events_missing, events_extra = [], []
    resets_sent = {u["email"]: (sum(1 for _, o, k in u["password_changes"] if o == "acked" and k != "change"),
                                sum(1 for _, o, k in u["password_changes"] if o == "indeterminate" and k != "change"))
                   for u in ledger["users"]}
    for email, found in by_email.items():
        row = found[0]
        user_id, version = row["id"], row["version"]
        counts = per_user.get(user_id, collections.Counter())
        if counts["user.registered"] != 1:
            (events_missing if counts["user.registered"] < 1 else events_extra).append(
                f"{email}: {counts['user.registered']} user.registered")
        # Contract §11: one user.email_verified per verified address (it is verified once: no
        # email changes here), one user.password_reset per reset applied.
        verified = 1 if row["email_verified"] else 0
        if counts["user.email_verified"] != verified:
            (events_missing if counts["user.email_verified"] < verified else events_extra).append(
                f"{email}: {counts['user.email_verified']} user.email_verified, email_verified {row['email_verified']}")
        resets_acked, resets_unknown = resets_sent.get(email, (0, 0))
        if counts["user.password_reset"] < resets_acked:
            events_missing.append(f"{email}: {counts['user.password_reset']} user.password_reset for {resets_acked} "
                                  f"acknowledged resets")
        elif counts["user.password_reset"] > resets_acked + resets_unknown:
            events_extra.append(f"{email}: {counts['user.password_reset']} user.password_reset for {resets_acked} "
                                f"acknowledged + {resets_unknown} unanswered resets")
        bumps = verification_bumps(user_id, row["email_verified"])[0]
        updates = version - 1 - bumps - counts["user.password_reset"]
        if counts["user.updated"] != updates:
            (events_missing if counts["user.updated"] < updates else events_extra).append(
                f"{email}: {counts['user.updated']} user.updated for version {version} "
                f"({counts['user.password_reset']} resets, {bumps} verification)")
    revoked_events = sum(c["token.revoked"] for c in per_user.values())
    logouts = ledger["logouts"]
    if revoked_events < logouts["acked"]:
        events_missing.append(f"{revoked_events} token.revoked events for {logouts['acked']} acknowledged logouts")
    if revoked_events > logouts["acked"] + logouts["indeterminate"]:
        events_extra.append(f"{revoked_events} token.revoked events for {logouts['acked']} acknowledged "
                            f"+ {logouts['indeterminate']} unanswered logouts")
    duplicate_deliveries = len(events) - len(by_id)

    # Revoked tokens.
    revocations = ledger["revocations"]
    late = [(r, a) for r in revocations for a in r["accepted_late"]]
    in_window = [(r, a) for r in revocations for a in r["accepted_in_window"]]
    convergence = [r["convergence"] for r in revocations if r["convergence"] is not None]
    never_converged = [r for r in revocations if r["convergence"] is None]
    probe_statuses = collections.Counter()
    for r in revocations:
        probe_statuses.update(r["statuses"])

    # Histograms: per route, overall and per fault window.
    def phase_of(t):
        current = "steady"
        for stamp, what in timeline:
            if stamp > t:
                break
            if what.startswith("fault "):
                current = what[len("fault "):]
            elif what.startswith("recovered") or what.startswith("load "):
                current = "steady"
        return current

    histogram = collections.defaultdict(collections.Counter)
    by_phase = collections.defaultdict(lambda: collections.defaultdict(collections.Counter))
    for r in requests:
        if r["client"] == "final" and r["route"] == "GET /health/ready":
            continue
        histogram[r["route"]][str(r["status"])] += 1
        by_phase[phase_of(r["t"])][r["route"]][str(r["status"])] += 1

    crashes = [what for _, what in timeline if what.startswith("crash ")]
    failed = bool(lost or twice or late or events_missing or events_extra or events_error or never_converged
                  or crashes or ledger["anomalies"].get("load generator error")
                  or ledger["anomalies"].get("refresh token refused as reused without a replay")
                  or ledger["anomalies"].get("valid refresh token refused")
                  or (mail and mail["violations"]))
    mail_broken = sum(len(v) for v in mail["violations"].values()) if mail else 0
    out = []
    w = out.append
    start = min((r["t"] for r in requests), default=0)
    end = max((r["t"] for r in requests), default=0)
    w(f"chaos report, {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(start))}, "
      f"{end - start:.0f} s of requests, {len(requests)} requests, {os.environ.get('CHAOS_CLIENTS', '4')} clients, "
      f"{os.cpu_count()} cores")
    w("")
    w("timeline (seconds from the first request):")
    for stamp, what in timeline:
        w(f"  {stamp - start:7.1f}  {what}")
    w("")
    w(f"processes that crashed (restarted by the script): {len(crashes)}")
    for line in crashes:
        w(f"  {line}")
    w("")
    w("commands acknowledged vs applied (checked in PostgreSQL):")
    for kind in ("register", "rename", "password", "reset"):
        w(f"  {kind:9} acknowledged {acked[kind]:5}   applied {applied[kind]:5}")
    w(f"  unanswered (5xx, timeout, connection error): registrations {indeterminate_total['register']} "
      f"(applied anyway: {indeterminate_applied['register']}), profile changes {indeterminate_total['update']} "
      f"(applied anyway: {indeterminate_applied['update']})")
    w(f"  logouts acknowledged {logouts['acked']}, unanswered {logouts['indeterminate']}, refused {logouts['rejected']}")
    w(f"  lost (acknowledged, not applied): {len(lost)}")
    for line in lost[:20]:
        w(f"    {line}")
    w(f"  applied twice: {len(twice)}")
    for line in twice[:20]:
        w(f"    {line}")
    w(f"  accounts not in the ledger: {len(unknown_rows)}; identity_processed_messages rows: {processed} "
      f"for {commands_applied} applied commands")
    w("")
    w(f"events on identity.events ({EVENTS_QUEUE}): {len(by_id)} distinct, {duplicate_deliveries} redelivered copies, "
      f"outbox left {outbox_left}")
    if events_error:
        w(f"  could not read the events: {events_error}")
    w(f"  missing: {len(events_missing)}; more than the changes applied: {len(events_extra)}")
    for line in (events_missing + events_extra)[:20]:
        w(f"    {line}")
    w("")
    w(f"revocations: {len(revocations)} tokens ({sum(1 for r in revocations if r['kind'] == 'logout')} logged out, "
      f"{sum(1 for r in revocations if r['kind'] == 'password')} by a password change, "
      f"{sum(1 for r in revocations if r['kind'] == 'reset')} by a password reset), "
      f"{sum(probe_statuses.values())} re-tries")
    w(f"  re-tries answered: {dict(sorted(probe_statuses.items()))}")
    w(f"  accepted more than {WINDOW:g} s after the revocation: {len(late)}")
    for r, a in late[:20]:
        w(f"    jti {r['jti']} ({r['kind']} on node {r['node']}): accepted by node {a['node']} {a['age_s']} s after, "
          f"phase {phase_of(a['wall'])}")
    w(f"  accepted within {WINDOW:g} s: {len(in_window)} (by the node that revoked it: "
      f"{sum(1 for r, a in in_window if a['node'] == r['node'])})")
    if convergence:
        w(f"  convergence (revocation's answer to the other node's first 401): median {percentile(convergence, 50) * 1000:.0f} ms, "
          f"p99 {percentile(convergence, 99) * 1000:.0f} ms, longest {max(convergence) * 1000:.0f} ms")
        over_100 = [r for r in revocations if r["convergence"] and r["convergence"] > 0.1]
        w(f"  over 100 ms (contract §5 while the broker is up): {len(over_100)}"
          + "".join(f"; {r['convergence'] * 1000:.0f} ms at +{r['wall'] - start:.1f} s ({phase_of(r['wall'])})"
                    for r in sorted(over_100, key=lambda r: -r["convergence"])[:5]))
        slow = sorted((r for r in revocations if r["convergence"] and r["convergence"] > WINDOW),
                      key=lambda r: -r["convergence"])
        w(f"  over {WINDOW:g} s: {len(slow)} (answered 503 meanwhile, not 200: "
          f"{sum(1 for r in slow if not r['accepted_late'] and not r['accepted_in_window'])})")
        for r in slow[:5]:
            w(f"    {r['convergence']:.2f} s, {r['kind']} at +{r['wall'] - start:.1f} s ({phase_of(r['wall'])}), "
              f"re-tries {r['statuses']}")
    w(f"  never refused by the other node within 60 s: {len(never_converged)}")
    w("")
    w("statuses per route (whole run):")
    for route in sorted(histogram):
        w(f"  {route:40} {dict(sorted(histogram[route].items()))}")
    for phase in by_phase:
        if phase == "steady":
            continue
        w(f"statuses per route during {phase}:")
        for route in sorted(by_phase[phase]):
            w(f"  {route:40} {dict(sorted(by_phase[phase][route].items()))}")
    w("")
    if mail:
        out.extend(mail_text(mail, ledger, drained, phase_of))
        w("")
    w(f"other observations: {ledger['stale_reads']} reads of an older name than the last acknowledged; "
      f"{dict(ledger['anomalies']) or 'no anomalies'}")
    for kind, examples in ledger["anomaly_examples"].items():
        w(f"  {kind}: {examples[:3]}")
    for line in notes[:20]:
        w(f"  {line}")
    w("")
    w("RESULT: " + ("FAIL" if failed else "PASS") +
      f" (lost {len(lost)}, applied twice {len(twice)}, revoked tokens accepted late {len(late)}, "
      f"events missing {len(events_missing)}, extra {len(events_extra)}, crashes {len(crashes)}"
      + (f", mail promises broken {mail_broken})" if mail else ")"))
    text = "\n".join(out) + "\n"
    path = os.path.join(workdir, "results.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)
    return 1 if failed else 0


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "proxy":
        proxy(int(sys.argv[2]), int(sys.argv[3]))
    elif command == "load":
        load(sys.argv[2], sys.argv[3:])
    elif command == "events-queue":
        events_queue()
    elif command == "drain":
        drain(sys.argv[2])
    elif command == "report":
        sys.exit(report(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
