#!/usr/bin/env python3
"""The Python side of scripts/chaos (read Docs/reliability.md first).

    chaos.py proxy LISTEN_PORT TARGET_PORT
        A TCP proxy on 127.0.0.1 between one HTTP node and RabbitMQ. SIGUSR1 cuts every
        connection and closes the listening socket (connections are refused), SIGUSR2 listens
        again, SIGTERM stops it.
    chaos.py load WORKDIR NODE_URL...
        Mixed load from CHAOS_CLIENTS client threads until WORKDIR/stop exists, with a ledger of
        what each client was told, re-tries of every revoked token against every node, and a
        final check over HTTP; writes WORKDIR/ledger.json and WORKDIR/requests.jsonl.
    chaos.py report WORKDIR
        Compares the ledger with PostgreSQL (psql) and with the events consumed from
        identity.events (pika), prints the report, writes WORKDIR/results.txt; exit status 1
        when something acknowledged was lost, something was applied twice, a revoked token
        was accepted more than CHAOS_WINDOW seconds after its revocation, or a process crashed
        (WORKDIR/timeline.txt).
    chaos.py events-queue
        Declares the quorum queue chaos.events bound to identity.events ('#') (pika).

Standard library only, except for the pika parts (events-queue, report), which run from the
virtual environment that scripts/test and scripts/chaos create.
"""

import base64
import collections
import http.client
import json
import os
import random
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
        self.password_changes = []  # [password, outcome] in order
        self.initial_name = name
        self.initial_password = password
        self.final_password = None


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.users = []
        self.revocations = []  # dicts, filled in by the probe threads
        self.logouts = {"acked": 0, "indeterminate": 0, "rejected": 0}
        self.anomalies = collections.Counter()
        self.anomaly_examples = collections.defaultdict(list)
        self.stale_reads = 0

    def anomaly(self, kind, example):
        with self.lock:
            self.anomalies[kind] += 1
            if len(self.anomaly_examples[kind]) < 5:
                self.anomaly_examples[kind].append(example)


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
            user.password_changes.append([new, "acked"])
            user.passwords = [new]
            user.refresh = None  # a password change ends every session
            revoked, user.tokens = user.tokens, []
            for old in revoked:
                self.revoked(old, user, node, "password", end, wall + end - start)
        elif indeterminate(status):
            # Maybe applied: the tokens may or may not be revoked, so they are not used again.
            user.password_changes.append([new, "indeterminate"])
            user.passwords = [new] + user.passwords
            user.tokens = []
            user.refresh = None
        else:
            user.password_changes.append([new, f"rejected:{status}"])
            if status == 403 and len(user.passwords) > 1:
                user.passwords = user.passwords[1:]
            elif status == 401:
                user.tokens.remove(token)
                self.ledger.anomaly("valid token refused (401)", {"email": user.email, "route": "PUT /users/me"})

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
                        action = rng.choices(
                            [self.me, self.rename, self.login, self.logout, self.change_password, self.refresh],
                            weights=[35, 25, 12, 14, 8, 20],
                        )[0]
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
        # Which password each account has now (the ledger says which it may have).
        for user in self.ledger.users:
            if user.registration.startswith("rejected"):
                continue
            candidates = [user.initial_password] + [p for p, _ in user.password_changes]
            for password in reversed(candidates):
                status, *_ = self.nodes.request(0, "POST", "/auth/login", "POST /auth/login (final)",
                                                {"email": user.email, "password": password}, client="final")
                if status == 200:
                    user.final_password = password
                    break

    def run_until_stopped(self):
        stop_file = os.path.join(self.workdir, "stop")
        threads = [threading.Thread(target=self.client, args=(f"c{i}",), daemon=True) for i in range(self.clients)]
        threads.append(threading.Thread(target=self.pool_prober, daemon=True))
        for thread in threads:
            thread.start()
        while not os.path.exists(stop_file):
            time.sleep(0.2)
        self.stop.set()
        for thread in threads:
            thread.join()
        print(f"{time.time():.3f} load stopped; waiting for the revocation probes", file=sys.stderr, flush=True)
        for thread in list(self.probes):
            thread.join()
        self.final_checks()
        self.recorder.close()
        with open(os.path.join(self.workdir, "ledger.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)

    def to_json(self):
        ledger = self.ledger
        users = []
        for u in ledger.users:
            users.append({"email": u.email, "id": u.id, "registration": u.registration, "initial_name": u.initial_name,
                          "renames": u.renames,
                          "password_changes": [[secrets.compare_digest(p, u.final_password or "") , o]
                                               for p, o in u.password_changes],
                          "initial_password_is_final": u.final_password == u.initial_password,
                          "final_password_known": u.final_password is not None})
        revocations = []
        for r in ledger.revocations:
            r = dict(r)
            r["statuses"] = dict(r["statuses"])
            revocations.append(r)
        return {"users": users, "revocations": revocations, "logouts": ledger.logouts,
                "anomalies": dict(ledger.anomalies), "anomaly_examples": ledger.anomaly_examples,
                "stale_reads": ledger.stale_reads, "nodes": [f"{h}:{p}" for h, p in self.nodes.urls]}


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
    rows = psql("SELECT id, email, name, version FROM identity_users")
    by_email = collections.defaultdict(list)
    for user_id, email, name, version in rows:
        by_email[email].append({"id": user_id, "name": name, "version": int(version)})
    processed = int(psql("SELECT count(*) FROM identity_processed_messages")[0][0])
    duplicate_emails = psql("SELECT email, count(*) FROM identity_users GROUP BY email HAVING count(*) > 1")
    duplicate_processed = psql("SELECT message_id, count(*) FROM identity_processed_messages GROUP BY message_id HAVING count(*) > 1")
    try:
        events = drain_events()
        events_error = None
    except Exception as error:  # reported, and counted as a failure below
        events, events_error = [], repr(error)

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
        # Passwords: the last acknowledged change, or a later unknown one, is what logs in now.
        changes = [[u["initial_password_is_final"], "acked"]] + u["password_changes"]
        last_acked = max(i for i, (_, outcome) in enumerate(changes) if outcome == "acked")
        ok = changes[last_acked][0] or any(is_final for is_final, o in changes[last_acked + 1:] if o == "indeterminate")
        acked["password"] += sum(1 for _, o in u["password_changes"] if o == "acked")
        applied["password"] += sum(1 for _, o in u["password_changes"] if o == "acked")
        if not ok:
            where = [i for i, (is_final, _) in enumerate(changes) if is_final]
            lost.append(f"password change #{last_acked} of {u['email']} (200): the password that logs in is "
                        f"{'change #' + str(where[0]) if where else 'none of those sent'}")
            if last_acked > 0:
                applied["password"] -= 1
        # Versions: 1 at registration, +1 per applied change (every change sent changes something).
        acked_changes = sum(1 for _, o in u["renames"] + u["password_changes"] if o == "acked")
        unknown_changes = sum(1 for _, o in u["renames"] + u["password_changes"] if o == "indeterminate")
        indeterminate_total["update"] += unknown_changes
        changes_applied = row["version"] - 1
        if changes_applied > acked_changes + unknown_changes:
            twice.append(f"{u['email']}: version {row['version']} = {changes_applied} changes applied, "
                         f"but only {acked_changes} acknowledged + {unknown_changes} unanswered were sent")
        elif changes_applied < acked_changes:
            lost.append(f"{u['email']}: {acked_changes} changes acknowledged, version {row['version']} "
                        f"says {changes_applied} applied")
        else:
            indeterminate_applied["update"] += changes_applied - acked_changes
    unknown_rows = [e for e in by_email if e not in known]
    commands_applied = sum(1 for e in by_email) + sum(r[0]["version"] - 1 for r in by_email.values())
    if processed != commands_applied:
        notes.append(f"identity_processed_messages has {processed} rows for {commands_applied} applied commands "
                     f"(accounts + changes)")
    for email, count in duplicate_emails:
        twice.append(f"{email}: {count} rows")
    for message_id, count in duplicate_processed:
        twice.append(f"message {message_id}: {count} rows in identity_processed_messages")

    # Events: every committed change published (at least once; distinct event ids counted).
    by_id = {}
    for event in events:
        by_id.setdefault(event.get("event_id"), event)
    per_user = collections.defaultdict(collections.Counter)
    for event in by_id.values():
        per_user[event.get("data", {}).get("user_id")][event.get("type")] += 1
    events_missing, events_extra = [], []
    user_ids = {r[0]["id"]: (email, r[0]["version"]) for email, r in by_email.items()}
    for user_id, (email, version) in user_ids.items():
        counts = per_user.get(user_id, collections.Counter())
        if counts["user.registered"] != 1:
            (events_missing if counts["user.registered"] < 1 else events_extra).append(
                f"{email}: {counts['user.registered']} user.registered")
        if counts["user.updated"] != version - 1:
            (events_missing if counts["user.updated"] < version - 1 else events_extra).append(
                f"{email}: {counts['user.updated']} user.updated for version {version}")
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
                  or ledger["anomalies"].get("valid refresh token refused"))
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
    for kind in ("register", "rename", "password"):
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
      f"{sum(1 for r in revocations if r['kind'] == 'password')} by a password change), "
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
    w(f"other observations: {ledger['stale_reads']} reads of an older name than the last acknowledged; "
      f"{dict(ledger['anomalies']) or 'no anomalies'}")
    for kind, examples in ledger["anomaly_examples"].items():
        w(f"  {kind}: {examples[:3]}")
    for line in notes[:20]:
        w(f"  {line}")
    w("")
    w("RESULT: " + ("FAIL" if failed else "PASS") +
      f" (lost {len(lost)}, applied twice {len(twice)}, revoked tokens accepted late {len(late)}, "
      f"events missing {len(events_missing)}, extra {len(events_extra)}, crashes {len(crashes)})")
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
    elif command == "report":
        sys.exit(report(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
