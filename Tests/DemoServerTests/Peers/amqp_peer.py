"""A Python (pika) peer of the Identity broker topology, for the end-to-end tests.

    amqp_peer.py consume URL SECONDS LAST
                                       bind an exclusive queue to identity.events ('#'), print
                                       READY, then one JSON line per event until an event of
                                       type LAST arrives or SECONDS pass
    amqp_peer.py publish URL QUEUE TYPE BODY
                                       publish BODY with the given type property and a fresh
                                       message_id to QUEUE; signed (x-identity-mac, as
                                       Docs/messaging.md specifies) when the environment has
                                       IDENTITY_PEER_COMMAND_KEY
    amqp_peer.py count URL QUEUE       print how many messages QUEUE holds
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import time
import uuid

import pika


def connect(url):
    return pika.BlockingConnection(pika.URLParameters(url))


def consume(url, seconds, last):
    connection = connect(url)
    channel = connection.channel()
    channel.exchange_declare("identity.events", exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "identity.events", routing_key="#")
    print("READY", flush=True)
    deadline = time.monotonic() + seconds
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.2):
        if time.monotonic() > deadline:
            break
        if method is None:
            continue
        line = {
            "routing_key": method.routing_key,
            "type": properties.type,
            "message_id": properties.message_id,
            "content_type": properties.content_type,
            "persistent": properties.delivery_mode == 2,
            "body": json.loads(body),
        }
        print(json.dumps(line), flush=True)
        channel.basic_ack(method.delivery_tag)
        if properties.type == last:
            break
    connection.close()


def command_mac(key, message_id, correlation_id, reply_to, type_, deadline_ms, body):
    """The header x-identity-mac, version 1, written from the documentation alone."""

    def field(value):
        if value is None or len(value) == 0:
            return b"\x00"
        return b"\x01" + struct.pack(">Q", len(value)) + value

    def text(value):
        return None if value is None else value.encode()

    message = b"identity-command-v1" + b"".join([
        field(text(message_id)), field(text(correlation_id)), field(text(reply_to)), field(text(type_)),
        field(None if deadline_ms is None else str(deadline_ms).encode()), field(body),
    ])
    code = hmac.new(key, message, hashlib.sha256).digest()
    key_id = hmac.new(key, b"identity-command-key-id", hashlib.sha256).digest()[:4].hex()
    return "v1." + key_id + "." + base64.urlsafe_b64encode(code).rstrip(b"=").decode()


def publish(url, queue, type_, body):
    connection = connect(url)
    channel = connection.channel()
    message_id = str(uuid.uuid4())
    headers = None
    key = os.environ.get("IDENTITY_PEER_COMMAND_KEY")
    if key:
        headers = {"x-identity-mac": command_mac(key.encode(), message_id, None, None, type_, None, body.encode())}
    properties = pika.BasicProperties(type=type_, message_id=message_id, delivery_mode=2, headers=headers)
    channel.basic_publish("", queue, body.encode(), properties)
    connection.close()


def count(url, queue):
    connection = connect(url)
    channel = connection.channel()
    print(channel.queue_declare(queue, passive=True).method.message_count, flush=True)
    connection.close()


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "consume":
        consume(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    elif command == "publish":
        publish(*sys.argv[2:6])
    elif command == "count":
        count(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + command)
